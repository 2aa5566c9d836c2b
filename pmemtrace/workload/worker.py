"""The worker of ``pmemtrace run``: the forked process that maps, touches,
does the O_DIRECT/GUP steps of a scenario, tracks every byte it wrote in a
:class:`~pmemtrace.workload.shadow.Shadow`, verifies all of it at the end,
and reports one JSON line per event to the supervisor
(:mod:`pmemtrace.workload.runner`).  A step expected to SIGBUS (or saying
``"fork": true``) runs in a grandchild via :meth:`Mapping.child_touch`.
"""

import json
import os
import time
from typing import Any, Callable, ClassVar

from ..errors import UsageError
from ..host import procmaps
from ..host.fsread import Roots
from . import engine as E
from .scenario import PAGE
from .shadow import Shadow

PMD = 2 << 20
SEED = 0x706D656D  # the pattern seed of the first write; later kinds add 1, 2


class Worker:
    """The forked process that does a scenario's steps and reports each as
    one JSON line on *out*; *go* paces it (the supervisor starts tracing
    between the mappings and the first step, and stops it before the final
    verification)."""

    # both set after the class body (they name its methods)
    STEPS: ClassVar[dict[str, Callable[..., Any]]]
    NEEDS_MAPPING: ClassVar[frozenset[str]]

    def __init__(self, scen, fd, size, dio_fd, out, go, dev_align=0, devpath=None):
        self.s = scen
        self.dev_align = dev_align  # the device's align (devdax) or 0
        self.devpath = devpath  # the devdax node, reopened read-only to verify
        self.fd = fd
        self.size = size
        self.dio_fd = dio_fd
        self.out = out
        self.go = go
        self.maps = {}  # id -> Mapping (live) or None
        self.addr = {}  # id -> reserved start address
        self.holds = {}  # id -> PROT_NONE placeholder Mapping
        self.fileoff = {}  # id -> file offset of a remapped anon landing pad
        self.shadow = Shadow()
        self.seed = SEED
        self.remap_failed = set()

    def send(self, **msg):
        os.write(self.out, (json.dumps(msg) + "\n").encode())

    def wait_go(self):
        os.read(self.go, 1)

    def _align(self, m):
        if m.align:
            return m.align
        return max(PMD, self.s.device_align or 0, self.dev_align)

    def place(self):
        for m in self.s.mappings:
            if m.at is not None:
                self.addr[m.id] = self.addr[m.at]
                continue
            if m.place == "kernel":
                self.addr[m.id] = None
                continue
            a = self._align(m)
            extra = m.misalign if m.place == "misaligned" else 0
            # PROT_NONE on both sides, a whole 2 MiB beyond each end: no other
            # mapping shares the mapping's first or last 2 MiB block, so no
            # foreign page table stops a huge fault there (lab 6.12, see
            # docs/model-validation.md)
            hold = E.mmap(-1, m.length + extra + a + 2 * PMD, prot=E.PROT_NONE, shared=False)
            start = (hold.addr + PMD + a - 1) & ~(a - 1)
            self.addr[m.id] = start + extra
            self.holds[m.id] = hold

    def _rehold(self, m, addr):
        """Cover a just-unmapped range with PROT_NONE again, so no other
        allocation lands where the scenario will map next."""
        try:
            E.mmap(-1, m.length, prot=E.PROT_NONE, shared=False, addr=addr, fixed=True)
        except OSError:
            pass

    def mmap(self, mid):
        m = self.s.mapping(mid)
        addr = self.addr[mid]
        prot = E.PROT_READ | (E.PROT_WRITE if m.writable else 0)
        if addr is not None:
            for oid, other in self.maps.items():
                if other is not None and oid != mid and other.addr < addr + m.length and addr < other.end:
                    # another live mapping of the scenario is there: ask with
                    # MAP_FIXED_NOREPLACE (EEXIST), as the model does
                    E.mmap(self.fd, m.length, offset=m.offset, addr=addr, noreplace=True)
        try:
            if m.anon:
                mp = E.mmap(-1, m.length, prot=prot, shared=False, addr=addr, fixed=addr is not None)
            else:
                mp = E.mmap(
                    self.fd,
                    m.length,
                    offset=m.offset,
                    prot=prot,
                    shared=m.shared,
                    sync=m.sync,
                    validate=m.validate,
                    populate=m.populate,
                    addr=addr,
                    fixed=addr is not None,
                )
        except OSError:
            if addr is not None:
                self._rehold(m, addr)
            raise
        self.maps[mid] = mp
        self.fileoff.pop(mid, None)
        if self.addr[mid] is None:
            self.addr[mid] = mp.addr
        return mp

    def munmap(self, mid):
        mp = self.maps.get(mid)
        if mp is None:
            return
        mp.unmap()
        self.maps[mid] = None
        self._rehold(self.s.mapping(mid), mp.addr)

    def reaches_file(self, m, mid):
        """Do stores through this mapping land in the file/device?"""
        if mid in self.fileoff:  # a pad that a shared file page was mremapped onto
            return True
        return m.shared and not m.anon

    def file_pos(self, mid, offset):
        if mid in self.fileoff:
            return self.fileoff[mid] + offset
        return self.s.mapping(mid).offset + offset

    # --- steps: one method per op, found through STEPS ---
    def step(self, i, st):
        handler = self.STEPS.get(st.op)
        if handler is None:
            raise UsageError(f"step {i}: op {st.op} not implemented")
        if st.op in self.NEEDS_MAPPING:
            mp = self.maps.get(st.mapping) if st.mapping else None
            if mp is None:
                return {"outcome": "skipped", "detail": f"mapping {st.mapping} is not mapped"}
            return handler(self, st, mp)
        return handler(self, st)

    def _step_mmap(self, st):
        mp = self.mmap(st.mapping)
        return {"addr": mp.addr, "page_tables": edge_page_tables(mp.addr, mp.length)}

    def _step_munmap(self, st):
        self.munmap(st.mapping)
        return {}

    def _step_touch(self, st, mp):
        """read, write and fork: loads or stores every *stride* bytes."""
        op = st.op
        m = self.s.mapping(st.mapping)
        if st.mapping in self.remap_failed:
            # an anonymous landing pad that no file page reached
            return {"outcome": "skipped", "detail": "the mremap onto this pad failed"}
        write = op == "write" or (op == "fork" and st.write)
        pos = self.file_pos(st.mapping, st.offset)
        if st.fork or op == "fork" or "sigbus" in st.expect:
            r = mp.child_touch(st.offset, st.length, st.stride, write=write, seed=self.seed)
            res = {"pages": r.touched, "child": r.to_json()}
            if r.signal:
                res["outcome"] = r.signame.lower() if r.signame == "SIGBUS" else r.signame
                res["fault_offset"] = (r.fault_addr - mp.addr) if r.fault_addr else None
            if write and self.reaches_file(m, st.mapping):
                for k in range(r.touched):
                    self.shadow.word(pos + k * st.stride, self.seed)
            if r.mismatches:
                res["corrupt"] = [f"{r.mismatches} words written by the child read back wrong"]
            return res
        n = mp.touch(st.offset, st.length, st.stride, write=write, seed=self.seed)
        if write:
            if self.reaches_file(m, st.mapping):
                for k in range(n):
                    self.shadow.word(pos + k * st.stride, self.seed)
            bad = mp.verify()  # read back through the mapping at once
            mp.written.clear()
            if bad:
                return {"pages": n, "corrupt": [f"mapping offset {b:#x} reads back wrong" for b in bad]}
        return {"pages": n}

    def _step_check(self, st, mp):
        pos = self.file_pos(st.mapping, st.offset)
        data = E.read_mapping(mp, st.offset, st.length)
        bad = []
        for p in range(0, st.length, PAGE):
            if (pos + p) in self.shadow.pages:
                bad += self.shadow.check_page(pos + p, data[p : p + PAGE])
        if bad:
            return {
                "outcome": "STALE",
                "detail": f"{len(bad)} words differ, first at file offset {bad[0]:#x}",
                "pages": (st.length + PAGE - 1) // PAGE,
            }
        return {"pages": (st.length + PAGE - 1) // PAGE}

    def _step_madvise(self, st, mp):
        mp.madvise(st.advice, st.offset, st.length)
        return {}

    def _step_mremap(self, st, mp):
        dst = self.maps.get(st.to)
        if dst is None:
            return {"outcome": "skipped", "detail": f"destination {st.to} is not mapped"}
        out = E.ffi.new("uint64_t *")
        flags = E.MREMAP_MAYMOVE | E.MREMAP_FIXED
        rc = E.lib.pmt_mremap(mp.addr + st.offset, st.length, st.length, flags, dst.addr, out)
        if rc < 0:
            self.remap_failed.add(st.to)
            raise E.EngineError(-rc, "mremap")
        self.fileoff[st.to] = self.file_pos(st.mapping, st.offset)
        dst.offset = self.fileoff[st.to]  # the pattern is keyed on the file position
        addr = int(out[0])
        # the landing pad's other pages keep their page table in the block
        return {"addr": addr, "page_tables": edge_page_tables(addr, st.length)}

    def _step_pwrite(self, st):
        buf = E.pattern_bytes(self.seed + 1, st.offset, st.length)
        n = os.pwrite(self.fd, buf, st.offset)
        self.shadow.fill(st.offset, n, self.seed + 1)
        return {"bytes": n}

    def _step_punch(self, st):
        E.punch_hole(self.fd, st.offset, st.length)
        self.shadow.fill(st.offset, st.length, "zero")
        return {}

    def _step_gup(self, st, mp):
        """O_DIRECT between the partner file and the mapping (GUP fast, as
        ndctl does), or process_vm_readv/writev on ourselves (slow GUP) when
        no --dio-dir was given.  write=True: data goes INTO the mapping."""
        pos = self.file_pos(st.mapping, st.offset)
        length = st.length
        if st.longterm:
            mp.longterm_pin(st.offset, length)
            return {"bytes": length, "via": "io_uring fixed buffer (FOLL_LONGTERM)"}
        buf = E.AlignedBuffer(max(length, PAGE))
        try:
            if st.write:
                seed = self.seed + 2
                E.lib.pmt_fill(buf.addr, length, seed, pos)
                if self.dio_fd is not None:
                    E.pwrite_from(self.dio_fd, buf.addr, length, 0)
                    n = mp.pread(self.dio_fd, length, 0, st.offset)
                else:
                    n = E.process_vm_write(mp.addr + st.offset, buf.addr, length)
                if n > 0:
                    self.shadow.fill(pos, n, seed)
                res = {"bytes": n, "via": "odirect" if self.dio_fd is not None else "process_vm_writev"}
            else:
                if self.dio_fd is not None:
                    n = mp.pwrite(self.dio_fd, length, 0, st.offset)
                    E.pread_into(self.dio_fd, buf.addr, n, 0) if n > 0 else 0
                else:
                    n = E.process_vm_read(buf.addr, mp.addr + st.offset, length)
                res = {"bytes": n, "via": "odirect" if self.dio_fd is not None else "process_vm_readv"}
                data = E.read_mapping(buf, 0, max(n, 0)) if n > 0 else b""
                bad = []
                for p in range(0, n - n % PAGE, PAGE):
                    if (pos + p) in self.shadow.pages:
                        bad += self.shadow.check_page(pos + p, data[p : p + PAGE])
                if bad:
                    res["corrupt"] = [f"data read through GUP differs at file offset {b:#x}" for b in bad[:8]]
            if n != length:
                res["outcome"] = "SHORT"
                res["detail"] = f"{n} of {length} bytes"
            return res
        finally:
            buf.unmap()

    def verify_all(self):
        """Read back every page the shadow knows, through the file (fsdax:
        pread, no faults) or a fresh read-only mapping (devdax)."""
        bad = []
        pages = sorted(self.shadow.pages)
        if not pages:
            return bad
        if self.s.mode == "fsdax":
            for p in pages:
                data = os.pread(self.fd, PAGE, p)
                if len(data) < PAGE:
                    data = data + bytes(PAGE - len(data))
                bad += self.shadow.check_page(p, data)
        else:
            a = max(self.dev_align, PAGE)
            lo = pages[0] & ~(a - 1)
            hi = min((pages[-1] + PAGE + a - 1) & ~(a - 1), self.size)
            rfd = os.open(self.devpath, os.O_RDONLY)
            try:
                hold = E.mmap(-1, hi - lo + a, prot=E.PROT_NONE, shared=False)
                start = (hold.addr + a - 1) & ~(a - 1)
                mp = E.mmap(rfd, hi - lo, offset=lo, prot=E.PROT_READ, addr=start, fixed=True)
                try:
                    for p in pages:
                        bad += self.shadow.check_page(p, E.read_mapping(mp, p - lo, PAGE))
                finally:
                    mp.unmap()
                    # the placeholder's remains around the fixed mapping
                    E.lib.pmt_munmap(hold.addr, hold.length)
            finally:
                os.close(rfd)
        return bad

    def run(self):
        try:
            if self.s.thp_disable:
                E.set_thp_disable(True)
            self.place()
            self.send(placed=dict(self.addr.items()))
            for m in self.s.mappings:
                if m.mapped:
                    mp = self.mmap(m.id)
                    self.send(mapped=m.id, addr=mp.addr, page_tables=edge_page_tables(mp.addr, mp.length))
            self.send(ready=True)
            self.wait_go()
            for i, st in enumerate(self.s.steps):
                self.send(begin=i)
                t0 = time.perf_counter()
                try:
                    res = self.step(i, st)
                    res.setdefault("outcome", "ok")
                except OSError as exc:
                    res = {"outcome": E.errname(exc.errno), "detail": str(exc)}
                res["seconds"] = round(time.perf_counter() - t0, 6)
                self.send(step=i, **res)
            self.send(steps_done=True)
            self.wait_go()  # the supervisor stops tracing first
            bad = self.verify_all()
            self.send(verified=len(self.shadow.pages), bad=[hex(b) for b in bad[:32]], nbad=len(bad))
        except Exception as exc:  # reported, never raised out of the fork
            self.send(error=f"{type(exc).__name__}: {exc}")


Worker.STEPS = {
    "mmap": Worker._step_mmap,
    "munmap": Worker._step_munmap,
    "read": Worker._step_touch,
    "write": Worker._step_touch,
    "fork": Worker._step_touch,
    "check": Worker._step_check,
    "gup": Worker._step_gup,
    "madvise": Worker._step_madvise,
    "mremap": Worker._step_mremap,
    "pwrite": Worker._step_pwrite,
    "punch": Worker._step_punch,
}
#: the ops whose mapping must be live (a step on an unmapped one is skipped)
Worker.NEEDS_MAPPING = frozenset(("read", "write", "fork", "gup", "madvise", "mremap", "check"))


def own_maps(roots=None):
    """[(start, end, path)] of this process's VMAs, read line by line.  Not
    ``Roots.read()``: its 1 MiB read buffer is a malloc'd mmap that the
    kernel places right below the newest mapping, i.e. in the first 2 MiB
    block of a mapping it just placed; the read writes it and free() unmaps
    it, and the emptied page table stays there as long as the mapping shares
    the block (mm/mmap.c free_pgtables(): floor/ceiling), invisible to
    pagemap (lab, all five kernels: 117 of 139 accesses where the kernel
    skipped the PMD attempt the record said it would make)."""
    maps, _source = procmaps.iter_process_maps(roots or Roots(), "self", names=("maps",))
    return [(v.start, v.end, v.path) for v in maps or ()]


def edge_page_tables(addr, length, roots=None):
    """2 MiB blocks at the ends of [addr, addr+length) that another mapping
    of this process shares and has present pages in: the kernel has a page
    table there, so it tries no huge fault in that block
    (mm/memory.c __handle_mm_fault(): pmd_none()).  Recorded into the case
    as process.page_tables."""
    blocks = {addr & ~(PMD - 1), (addr + length - 1) & ~(PMD - 1)}
    blocks = [b for b in blocks if b < addr or b + PMD > addr + length]
    if not blocks:
        return []
    vmas = [(v0, v1) for v0, v1, _path in own_maps(roots)]
    if not vmas:
        return []
    out = []
    for b in sorted(blocks):
        for lo, hi in vmas:
            lo, hi = max(lo, b), min(hi, b + PMD)
            if lo >= hi or (lo >= addr and hi <= addr + length):
                continue
            try:
                if any(e >> 63 for e in E.pagemap(lo, (hi - lo) // PAGE)):
                    out.append(b)
                    break
            except OSError:
                continue
    return out
