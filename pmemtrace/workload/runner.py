"""Run a scenario on the real host and record it as a case.

Two processes, so that a SIGBUS never kills pmemtrace and scratch files are
always removed:

* the **supervisor** (the pmemtrace process) creates the scratch file, reads
  its FIEMAP extents, sets up an fs_dax tracefs instance, forks the worker,
  collects its step reports from a pipe, removes scratch files (also on
  Ctrl-C, SIGTERM and errors) and writes the case;
* the **worker** (forked) maps, touches, does the O_DIRECT/GUP steps, tracks
  every byte it wrote in a shadow, verifies all of it at the end, and reports
  one JSON line per event.  A step that is expected to SIGBUS (or says
  ``"fork": true``) runs in a grandchild via :meth:`Mapping.child_touch`; an
  unexpected SIGBUS kills only the worker, and the supervisor records it.
"""

import json
import os
import signal
import time
from dataclasses import dataclass, field

from .. import __version__
from ..errors import UsageError
from . import engine as E
from .scenario import PAGE

MiB = 1 << 20
PMD = 2 * MiB
#: above this many touched addresses a step is recorded in the case as one
#: access per 2 MiB (what decides PMD vs PTE) instead of one per address
CASE_ACCESS_LIMIT = 65536  # per step: beyond this (256 MiB of 4 KiB touches) keep one access per 2 MiB
SEED = 0x706D656D


# ---- the shadow: what every written byte must read back as ---------------

class Shadow:
    """Per 4 KiB page of the file/device: a fill (None unknown, 'zero', or a
    pattern seed) plus single words written by touch loops."""

    def __init__(self):
        self.pages = {}
        self.limit = None  # file size: words past it are not checked

    def _page(self, pos):
        return self.pages.setdefault(pos & ~(PAGE - 1), [None, {}])

    def fill(self, start, length, seed):
        for p in range(start & ~(PAGE - 1), start + length, PAGE):
            self.pages[p] = [seed, {}]

    def word(self, pos, seed):
        self._page(pos)[1][pos & ~7] = seed

    def expected_word(self, pos):
        pg = self.pages.get(pos & ~(PAGE - 1))
        if pg is None:
            return None
        fill, words = pg
        if (pos & ~7) in words:
            return E.pattern(words[pos & ~7], pos & ~7)
        if fill == "zero":
            return 0
        if fill is None:
            return None
        return E.pattern(fill, pos & ~7)

    def check_page(self, pos, data):
        """Offsets (absolute) of bad words in one page's bytes; [] when fine."""
        fill, words = self.pages.get(pos, [None, {}])
        bad = []
        if self.limit is not None and pos + PAGE > self.limit:
            keep = max(0, (self.limit - pos) & ~7)
            data = bytes(data[:keep]) + bytes(PAGE - keep)
            words = {w: s for w, s in words.items() if w + 8 <= self.limit}
            if fill not in (None, "zero"):
                # past EOF: expect the zeros we padded with
                head = E.check_bytes(data[:keep], fill, pos) if keep else None
                bad += [] if head is None else [pos + head]
                fill = None
        for wpos, seed in words.items():
            o = wpos - pos
            if int.from_bytes(data[o:o + 8], "little") != E.pattern(seed, wpos):
                bad.append(wpos)
        if fill is None:
            return bad
        buf = bytearray(data)
        for wpos, seed in words.items():  # mask the words checked above
            o = wpos - pos
            v = 0 if fill == "zero" else E.pattern(fill, wpos)
            buf[o:o + 8] = v.to_bytes(8, "little")
        if fill == "zero":
            if any(buf):
                first = next(i for i, b in enumerate(buf) if b)
                bad.append(pos + (first & ~7))
        else:
            first = E.check_bytes(bytes(buf), fill, pos)
            if first is not None:
                bad.append(pos + first)
        return bad


# ---- the worker ----------------------------------------------------------

class _Worker:
    def __init__(self, scen, fd, size, dio_fd, out, go):
        self.s = scen
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
        return max(PMD, self.s.device_align or 0, getattr(self, "dev_align", 0))

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
                mp = E.mmap(self.fd, m.length, offset=m.offset, prot=prot, shared=m.shared, sync=m.sync,
                            validate=m.validate, populate=m.populate, addr=addr, fixed=addr is not None)
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

    # --- steps ---
    def file_pos(self, mid, offset):
        if mid in self.fileoff:
            return self.fileoff[mid] + offset
        return self.s.mapping(mid).offset + offset

    def step(self, i, st):
        op = st.op
        if op == "mmap":
            mp = self.mmap(st.mapping)
            return {"addr": mp.addr, "page_tables": edge_page_tables(mp.addr, mp.length)}
        if op == "munmap":
            self.munmap(st.mapping)
            return {}
        mp = self.maps.get(st.mapping) if st.mapping else None
        if op in ("read", "write", "fork", "gup", "madvise", "mremap", "check") and mp is None:
            return {"outcome": "skipped", "detail": f"mapping {st.mapping} is not mapped"}
        m = self.s.mapping(st.mapping) if st.mapping else None
        if op in ("read", "write", "fork"):
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
        if op == "check":
            pos = self.file_pos(st.mapping, st.offset)
            data = E.read_mapping(mp, st.offset, st.length)
            bad = []
            for p in range(0, st.length, PAGE):
                if (pos + p) in self.shadow.pages:
                    bad += self.shadow.check_page(pos + p, data[p:p + PAGE])
            if bad:
                return {"outcome": "STALE", "detail": f"{len(bad)} words differ, first at file offset {bad[0]:#x}",
                        "pages": (st.length + PAGE - 1) // PAGE}
            return {"pages": (st.length + PAGE - 1) // PAGE}
        if op == "gup":
            return self.gup(st, mp)
        if op == "madvise":
            mp.madvise(st.advice, st.offset, st.length)
            return {}
        if op == "mremap":
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
            return {"addr": int(out[0])}
        if op == "pwrite":
            buf = E.pattern_bytes(self.seed + 1, st.offset, st.length)
            n = os.pwrite(self.fd, buf, st.offset)
            self.shadow.fill(st.offset, n, self.seed + 1)
            return {"bytes": n}
        if op == "punch":
            E.punch_hole(self.fd, st.offset, st.length)
            self.shadow.fill(st.offset, st.length, "zero")
            return {}
        raise UsageError(f"step {i}: op {op} not implemented")

    def gup(self, st, mp):
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
                        bad += self.shadow.check_page(pos + p, data[p:p + PAGE])
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
            self.send(placed={k: v for k, v in self.addr.items()})
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
                    res = {"outcome": E.errname(exc.errno),
                           "detail": str(exc)}
                res["seconds"] = round(time.perf_counter() - t0, 6)
                self.send(step=i, **res)
            self.send(steps_done=True)
            self.wait_go()  # the supervisor stops tracing first
            bad = self.verify_all()
            self.send(verified=len(self.shadow.pages), bad=[hex(b) for b in bad[:32]], nbad=len(bad))
        except Exception as exc:  # reported, never raised out of the fork
            self.send(error=f"{type(exc).__name__}: {exc}")


# ---- the supervisor ------------------------------------------------------

@dataclass
class RunResult:
    scenario: object
    case: dict
    steps: list
    verified_pages: int = 0
    corrupt: list = field(default_factory=list)
    error: str = None
    worker_signal: str = None
    trace_text: str = ""
    trace_reason: str = None
    events: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def matches(self):
        return self.error is None and all(s["match"] for s in self.steps)

    def record(self):
        return {
            "pmemtrace_run": 1,
            "version": __version__,
            "scenario": self.scenario.name,
            "peer": self.scenario.peer,
            "peer_expects": self.scenario.expect,
            "matches": self.matches,
            "error": self.error,
            "worker_signal": self.worker_signal,
            "steps": self.steps,
            "verified_pages": self.verified_pages,
            "corrupt": self.corrupt,
            "trace": self.trace_reason or "recorded",
            "events": self.events,
            "notes": self.notes,
            "seconds": self.seconds,
        }


def _scratch_name(scen):
    return f".pmemtrace-{scen.name}-{os.getpid()}.dat"


def run_scenario(scen, target, dio_dir=None, trace=True, kernel=None, progress=None):
    """Run scen on target (a :class:`pmemtrace.workload.target.Target`);
    returns a :class:`RunResult`.  Never leaves scratch files, tracefs
    instances or the worker behind."""
    if scen.mode != target.mode:
        raise UsageError(f"scenario {scen.name} is a {scen.mode} scenario; give it "
                         f"{'--dir DIR (a DAX mount)' if scen.mode == 'fsdax' else '--device /dev/daxX.Y'}")
    dev_align = target.device.get("align") or PMD
    if scen.mode == "devdax" and scen.device_align and scen.device_align != dev_align:
        raise UsageError(f"scenario {scen.name} needs a devdax device with align {scen.device_align >> 10}K; "
                         f"{target.path} has align {dev_align >> 10}K (pass --reconfigure NAMESPACE to let "
                         "pmemtrace run 'ndctl create-namespace -f -m devdax -a ALIGN' on it; that destroys its data)")
    t_start = time.perf_counter()
    scratch = []
    fds = []
    trace_inst = None
    pid = None
    res = RunResult(scen, {}, [])
    res.notes += target.notes
    old_term = signal.getsignal(signal.SIGTERM)

    def _term(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, _term)
    try:
        # -- setup in the supervisor: scratch file, extents --
        if scen.mode == "fsdax":
            path = os.path.join(target.path, _scratch_name(scen))
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            scratch.append(path)
            fds.append(fd)
            E.ftruncate(fd, scen.file_size)
            shadow_init = None
            if scen.alloc == "fallocate":
                E.fallocate(fd, 0, scen.file_size)
                shadow_init = "zero"
            elif scen.alloc == "write":
                chunk = 4 * MiB
                for off in range(0, scen.file_size, chunk):
                    n = min(chunk, scen.file_size - off)
                    os.pwrite(fd, E.pattern_bytes(SEED - 1, off, n), off)
                shadow_init = SEED - 1
            else:
                shadow_init = "zero"  # holes read as zeros
            E.fsync(fd)
            for off, ln in scen.holes:
                E.punch_hole(fd, off, ln)
            E.fsync(fd)
            try:
                extents = E.fiemap(fd)
            except E.EngineError as exc:
                extents = []
                res.notes.append(f"FIEMAP failed ({exc}): the case has no extents")
            st = os.fstat(fd)
            size = scen.file_size
        else:
            fd = os.open(target.path, os.O_RDWR | os.O_CLOEXEC)
            fds.append(fd)
            extents, st, shadow_init = [], None, None
            size = target.device["size"]
        dio_fd = None
        if dio_dir and any(s.op == "gup" for s in scen.steps):
            dpath = os.path.join(dio_dir, f".pmemtrace-dio-{os.getpid()}")
            dio_fd = os.open(dpath, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_DIRECT | os.O_CLOEXEC, 0o600)
            scratch.append(dpath)
            fds.append(dio_fd)
            E.ftruncate(dio_fd, max((s.length for s in scen.steps if s.op == "gup"), default=PAGE))

        if trace:
            from ..live.tracefs import TraceCapture, remove_orphans_and_report

            remove_orphans_and_report()
            trace_inst = TraceCapture("run")
            res.trace_reason = trace_inst.reason
        else:
            res.trace_reason = "tracing not requested (--no-trace)"

        out_r, out_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # ---- worker
            code = 0
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                import faulthandler  # an expected SIGBUS is data, not a crash to dump

                faulthandler.disable()
                os.close(out_r)
                os.close(go_w)
                w = _Worker(scen, fd, size, dio_fd, out_w, go_r)
                w.dev_align = dev_align
                w.devpath = target.path
                if shadow_init is not None and scen.mode == "fsdax":
                    w.shadow.fill(0, scen.file_size, shadow_init)
                    for off, ln in scen.holes:
                        w.shadow.fill(off, ln, "zero")
                    w.shadow.limit = scen.file_size
                w.run()
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(out_w)
        os.close(go_r)

        msgs = []
        rf = os.fdopen(out_r, "r")
        placed = {}
        mapped_at_start = {}
        start_tables = set()
        current = None
        for line in rf:
            msg = json.loads(line)
            msgs.append(msg)
            if "placed" in msg:
                placed = msg["placed"]
            elif "mapped" in msg:
                mapped_at_start[msg["mapped"]] = msg["addr"]
                start_tables.update(msg.get("page_tables") or ())
            elif "ready" in msg:
                if trace_inst:
                    trace_inst.start(pid)
                    res.trace_reason = trace_inst.reason
                os.write(go_w, b"g")
            elif "begin" in msg:
                current = msg["begin"]
                if progress:
                    st_ = scen.steps[current]
                    progress(f"step {current}: {st_.op} {st_.mapping or ''}")
            elif "step" in msg:
                current = None
            elif "steps_done" in msg:
                if trace_inst:
                    res.trace_text = trace_inst.stop()
                    res.trace_reason = trace_inst.reason
                os.write(go_w, b"g")
            elif "verified" in msg:
                res.verified_pages = msg["verified"]
                if msg["nbad"]:
                    res.corrupt.append(f"{msg['nbad']} words read back wrong at the end, first at file/device "
                                       f"offsets {', '.join(msg['bad'][:8])}")
            elif "error" in msg:
                res.error = msg["error"]
        rf.close()
        os.close(go_w)
        _, status = os.waitpid(pid, 0)
        pid = None
        if os.WIFSIGNALED(status):
            sig = signal.Signals(os.WTERMSIG(status)).name
            res.worker_signal = sig
            if current is not None:
                msgs.append({"step": current, "outcome": "sigbus" if sig == "SIGBUS" else sig,
                             "detail": f"the worker died of {sig} in this step"})
            res.error = res.error or f"the worker died of {sig}" + (
                f" in step {current}" if current is not None else "")
        res.steps = _step_records(scen, msgs)
        for s in res.steps:
            for c in s.get("corrupt", []):
                res.corrupt.append(f"step {s['index']} ({s['op']}): {c}")
        res.case = build_case(scen, target, st, extents, placed, mapped_at_start, res.steps, kernel, dio_fd is not None,
                              start_tables)
        if res.trace_text:
            res.events = _parse_events(res.trace_text)
        return res
    finally:
        signal.signal(signal.SIGTERM, old_term)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        if trace_inst:
            trace_inst.close()
        for f in fds:
            try:
                os.close(f)
            except OSError:
                pass
        for p in scratch:
            try:
                os.unlink(p)
            except OSError:
                pass
        res.seconds = round(time.perf_counter() - t_start, 3)


def _parse_events(text):
    try:
        from ..live.parse import parse_trace_text
    except ImportError:
        return []
    try:
        return [e.to_json() for e in parse_trace_text(text.splitlines())]
    except Exception:  # the raw text is kept beside the case anyway
        return []


def _step_records(scen, msgs):
    got = {m["step"]: m for m in msgs if "step" in m}
    out = []
    for i, st in enumerate(scen.steps):
        m = dict(got.get(i, {"outcome": "not-run"}))
        m.pop("step", None)
        outcome = m.pop("outcome")
        rec = {"index": i, "op": st.op, "mapping": st.mapping, "outcome": outcome, "expect": st.expect,
               "match": outcome in st.expect}
        rec.update(m)
        if st.note:
            rec["note"] = st.note
        out.append(rec)
    return out


def _release(kernel):
    return kernel or os.uname().release


def edge_page_tables(addr, length):
    """2 MiB blocks at the ends of [addr, addr+length) that another mapping
    of this process shares and has present pages in: the kernel has a page
    table there, so it tries no huge fault in that block
    (mm/memory.c __handle_mm_fault(): pmd_none()).  Recorded into the case
    as process.page_tables."""
    blocks = {addr & ~(PMD - 1), (addr + length - 1) & ~(PMD - 1)}
    blocks = [b for b in blocks if b < addr or b + PMD > addr + length]
    if not blocks:
        return []
    try:
        with open("/proc/self/maps") as f:
            vmas = [tuple(int(x, 16) for x in line.split()[0].split("-")) for line in f]
    except OSError:
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


def build_case(scen, target, st, extents, placed, mapped_at_start, steps, kernel=None, odirect=False,
               start_tables=()):
    """The model's case (format v1) for what the worker did."""
    case = {"version": 1, "name": f"run-{scen.name}", "kernel": _release(kernel),
            "notes": f"recorded by pmemtrace run {scen.name} on {target.path}"
                     + (f" ({scen.peer})" if scen.peer else ""),
            "device": dict(target.device)}
    if scen.mode == "fsdax":
        f = {"size": scen.file_size, "ino": st.st_ino if st else 0,
             "extents": [e.to_case() for e in extents]}
        if target.fs in ("xfs", "ext4"):
            f["fs"] = target.fs
        case["file"] = f
    maps = []
    accesses = []
    ids = set()

    def addr_of(mid):
        return mapped_at_start.get(mid) or placed.get(mid)

    for m in scen.mappings:
        if m.anon:
            continue
        a = addr_of(m.id)
        if a is None:
            for s in steps:
                if s["op"] == "mmap" and s["mapping"] == m.id and s.get("addr"):
                    a = s["addr"]
                    break
        maps.append({"id": m.id, "start": hex(a or 0), "length": m.length, "offset": m.offset,
                     "shared": m.shared, "sync": m.sync, "writable": m.writable, "mapped": m.mapped})
        ids.add(m.id)
    tables = set(start_tables)
    for m in scen.mappings:
        # MAP_POPULATE faults the whole mapping in at mmap time
        # (mm_populate(): FOLL_WRITE only for private writable mappings)
        if not m.anon and m.mapped and m.populate:
            accesses.append({"mapping": m.id, "op": "gup", "offset": 0, "length": m.length, "populate": True,
                             "write": m.writable and not m.shared})
    remapped = {}
    for s, st_ in zip(steps, scen.steps):
        op, mid = st_.op, st_.mapping
        if s["outcome"] == "not-run":
            break
        if op == "mremap":
            if s["outcome"] == "ok":
                src = scen.mapping(mid)
                rid = f"{st_.to}@{s['index']}"
                maps.append({"id": rid, "start": hex(s["addr"]), "length": st_.length,
                             "offset": src.offset + st_.offset, "shared": src.shared, "sync": src.sync,
                             "writable": src.writable, "mapped": False})
                accesses.append({"mapping": rid, "op": "mmap"})
                remapped[st_.to] = rid
            continue
        if op == "pwrite":
            if s["outcome"] == "ok":
                accesses.append({"op": "pwrite", "offset": st_.offset, "length": s.get("bytes", st_.length)})
            continue
        cid = remapped.get(mid, mid)
        if cid not in ids and cid not in remapped.values():
            continue  # anonymous memory: not part of the case
        if op in ("mmap", "munmap"):
            accesses.append({"mapping": cid, "op": op})
            if op == "mmap":
                tables.update(s.get("page_tables") or ())
                src = scen.mapping(mid)
                if src.populate and not src.anon and s["outcome"] == "ok":
                    accesses.append({"mapping": cid, "op": "gup", "offset": 0, "length": src.length,
                                     "populate": True, "write": src.writable and not src.shared})
        elif op == "madvise":
            accesses.append({"mapping": cid, "op": "madvise", "advice": st_.advice, "offset": st_.offset,
                             "length": st_.length})
        elif op == "gup":
            g = {"mapping": cid, "op": "gup", "offset": st_.offset, "length": st_.length,
                 "write": st_.write or st_.longterm, "fast": odirect or st_.longterm}
            if st_.longterm:
                g["longterm"] = True
            accesses.append(g)
        elif op in ("read", "write", "fork", "check"):
            write = op == "write" or (op == "fork" and st_.write)
            fork = op == "fork" or st_.fork
            length = st_.length if op != "check" else st_.length
            stride = st_.stride if op != "check" else PAGE
            offs = list(range(st_.offset, st_.offset + length, stride))
            if s["outcome"] == "sigbus" and s.get("fault_offset") is not None:
                offs = [o for o in offs if o <= s["fault_offset"]] or offs[:1]
            if len(offs) > CASE_ACCESS_LIMIT:
                seen, keep = set(), []
                for o in offs:
                    if (o // PMD) not in seen:
                        seen.add(o // PMD)
                        keep.append(o)
                offs = keep
            if fork:  # a child has fresh page tables: modelled as munmap + mmap (see the dax-pmd example)
                accesses.append({"mapping": cid, "op": "munmap"})
                accesses.append({"mapping": cid, "op": "mmap"})
            for o in offs:
                accesses.append({"mapping": cid, "offset": o, "op": "write" if write else "read"})
    case["mappings"] = maps
    case["accesses"] = accesses
    proc = {}
    if scen.thp_disable:
        proc["thp_disable"] = True
    if tables:
        proc["page_tables"] = [hex(t) for t in sorted(tables)]
    if proc:
        case["process"] = proc
    return case
