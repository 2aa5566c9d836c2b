"""bcc backend: bpf/pmemtrace.bpf.c compiled at run time.

bcc is imported here only (lazily): ``import pmemtrace`` never needs it.
It comes from Debian's python3-bpfcc and imports only in /usr/bin/python3
(or a venv made from it with --system-site-packages).
"""

import collections
import importlib.util
import logging
import mmap
import os
import platform
import struct

from ..errors import KernelFeatureMissing, PrivilegeError, ProbeAttachError
from ..events import FAULT_FLAG, VM_FAULT
from . import bpf_file, bpfcache, bpfsys
from .btf import WANTED as BTF_OFFSETS
from .btf import fentry_functions, tp_btf_events
from .btf import offsets as btf_offsets
from .decode import COUNTERS as KERNEL_COUNTERS
from .decode import EVENT_SIZE, KINDS, CountedRow, DevdaxPairing, decode_records
from .pacing import Pacer
from .probes import fentry_candidates, hole_field, kernel_functions, resolve
from .ringbuf import HDR, RingReader, stride
from .session import Record
from .slots import SlotTable
from .tracefs import FS_DAX_TRACEPOINTS, fs_dax_tracepoints, in_initial_pid_namespace, pid_alive, tracefs_root

log = logging.getLogger(__name__)

#: the maps bpf/pmemtrace.bpf.c declares (those a build lacks are skipped)
TABLES = (
    "events",
    "lost",
    "devdax_order",
    "counts",
    "slots",
    "kinds",
    "comms",
    "fault_key",
    "observed",
    "seen_blocks",
)
_KEY = struct.Struct("<IIQQQ")  # struct pmt_key
_COUNTS = struct.Struct(f"<{len(KERNEL_COUNTERS)}Q")  # struct pmt_counts
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

STRIDE = stride(EVENT_SIZE)  # bytes a record takes in the ring
#: records decoded per drain: the ring is read again after each batch
DECODE_BATCH = 16384
#: raw records kept read but not yet decoded, in ring sizes, before the
#: ring is left to fill (and the kernel to drop and count)
BACKLOG_RINGS = 8


def why_not_bcc():
    """None if bcc can plausibly run here, else a sentence saying what is missing."""
    missing = []
    # found, not imported: importing bcc maps libbcc with LLVM and clang,
    # seconds a start from the compiled-program cache does without
    try:
        found = importlib.util.find_spec("bcc") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        missing.append("the bcc Python module (apt install python3-bpfcc; run with /usr/bin/python3)")
    rel = platform.release()
    if not (os.path.isdir(f"/lib/modules/{rel}/build") or os.path.exists("/sys/kernel/kheaders.tar.xz")):
        missing.append(f"kernel headers for {rel} (/lib/modules/{rel}/build)")
    if not (
        os.path.exists("/sys/bus/event_source/devices/kprobe")
        or os.path.exists(os.path.join(tracefs_root() or "/nonexistent", "kprobe_events"))
    ):
        missing.append("kprobes (CONFIG_KPROBES)")
    return "; ".join(missing) or None


def attach_plan(functions, tracepoints, aggregate, offsets=None, btf_tracepoints=True):
    """The probe table resolved as the bcc backend attaches it: the fs_dax
    events as tp_btf where BTF types their arguments and gives the
    offsets the programs read (live/btf.py tp_btf_events; not with
    *btf_tracepoints* false: a kernel that refused them), else, counting
    in the kernel (*aggregate*) where raw tracepoints work (4.17+), the
    done events as raw tracepoints, else tracepoints; fentry for the
    functions BTF allows (live/btf.py fentry_functions), else kprobes.
    ``watch --list-probes`` shows the same."""
    offsets = btf_offsets() if offsets is None else offsets
    fns = functions or {}
    have_offsets = all(f in offsets for f in BTF_OFFSETS.values())
    raw = (
        "bpf_raw_tracepoint_open" in fns or "bpf_find_raw_tracepoint" in fns or "bpf_get_raw_tracepoint" in fns
    ) and have_offsets
    cands = fentry_candidates(functions)
    return resolve(
        functions,
        tracepoints,
        raw_tracepoints=aggregate and raw,
        fentry=fentry_functions(cands) if cands else (),
        btf_tracepoints=tp_btf_events(FS_DAX_TRACEPOINTS) if raw and btf_tracepoints else (),
    )


class BccBackend:
    """bpf/pmemtrace.bpf.c: the fs_dax tracepoints (raw tracepoints when
    counting in the kernel) plus the PMD insert functions, get_dev_pagemap,
    GUP (fentry where BTF allows, else kprobes) and device-dax faults
    (kprobe and return probe).

    Everything bcc attaches is owned by file descriptors of this process
    (perf kprobe PMU, tracepoint perf events, the ring buffer map), so a
    killed watch leaves nothing in the kernel; only on a kernel without the
    kprobe PMU does bcc write ``p_<function>_bcc_<pid>`` kprobe events,
    which :func:`pmemtrace.live.tracefs.remove_orphans` removes."""

    name = "bcc"
    #: whether a process exists (a seam for the tests)
    _alive = staticmethod(pid_alive)
    #: whether counts() gives back a gone process's hash entries: only where
    #: the pids the programs count under are ours to look up (__init__)
    _give_back = True
    #: called with each chunk of ring records read, before it is decoded
    #: (a binary recording: record.Recorder.attach)
    record_tap = None
    #: the chunks go to record_tap only, none is decoded (RecordingBcc's ring)
    tap_only = False
    #: [(prog fd, bpfsys.Attachment)]: the tp_btf programs loaded after bcc compiled
    _btf_programs: list = ()  # type: ignore[assignment]
    #: the counters' per-CPU slots (slots.SlotTable), when counting in the kernel
    slots = None

    def __init__(self, pid=None, ringbuf_pages=4096, skip=(), aggregate=False, observe=True, file_filter=None):
        self.pid = pid
        #: (kernel dev_t, inode or None) of --path: fs_dax events of other
        #: files are dropped in the kernel
        self.file_filter = file_filter
        self.skip = set(skip)  # tracepoints not to attach (compiled out)
        self.ringbuf_pages = ringbuf_pages
        #: *aggregate*: count outcomes in the kernel (the default watch);
        #: *observe*: also send the first fault per 2 MiB of a file (the
        #: entry state fallback reasons replay; off with --no-reasons)
        self.aggregate = aggregate
        self.observe = observe
        self.root = tracefs_root()
        self.functions = kernel_functions()
        self.tracepoints = fs_dax_tracepoints(self.root)
        self.offsets = btf_offsets()
        self.resolved = attach_plan(self.functions, self.tracepoints, aggregate, self.offsets)
        self.bpf = None  # bcc.BPF when bcc compiled the program this run
        self.loaded = None  # bpfcache.Loaded when the cached program was loaded
        self.cached = False
        self.maps = {}  # name -> bpfsys.Map: what counts() and lost() read
        self.ring = None
        self.pacer = Pacer(ringbuf_pages * mmap.PAGESIZE)  # when the ring is read next
        self._ring_left = False  # the last read stopped with the backlog full, not the ring empty
        self._pending = collections.deque()  # [raw chunk, next record, records]: read, not yet decoded
        self._pending_bytes = 0
        self._slow = DevdaxPairing()  # device-dax faults wait for their return
        self.failed = []
        self._counted = {}  # pmt_key tuple -> counts already reported (the map keeps totals)
        self._dying = set()  # keys of gone processes whose hash entry goes at the next read
        # in a container's pid namespace a live process can look gone here:
        # its entry deleted while it counts would lose counts
        self._give_back = in_initial_pid_namespace()
        self._kinds_seen = {}  # kind -> events counted in the kernel already reported
        self._comms = {}
        self._btf_programs = []
        #: why this kernel refused the tp_btf programs (they are raw tracepoints then)
        self.tp_btf_refused = None

    def cflags(self):
        d = os.path.dirname(bpf_file("pmemtrace.h"))
        flags = [
            "-w",
            f"-I{d}",
            f"-DPMT_FILTER_PID={int(self.pid or 0)}",
            f"-DPMT_RINGBUF_PAGES={int(self.ringbuf_pages)}",
        ]
        if self.file_filter is not None:
            dev, ino = self.file_filter
            flags += [f"-DPMT_FILTER_DEV={int(dev)}", f"-DPMT_FILTER_INO={int(ino or 0)}"]
        flags += [
            f"-DPMT_VM_FAULT_STOP={VM_FAULT['FALLBACK'] | VM_FAULT['SIGBUS']:#x}",
            f"-DPMT_VM_FAULT_SIGBUS={VM_FAULT['SIGBUS']:#x}",
            f"-DPMT_FAULT_FLAG_WRITE={FAULT_FLAG['WRITE']:#x}",
        ]
        if self.aggregate:
            flags += ["-DPMT_AGGREGATE=1", f"-DPMT_NCPUS={bpfsys.possible_cpus()}"]
            if self.observe:
                flags.append("-DPMT_OBSERVE=1")
        # member offsets from BTF; without BTF (or a member) 0, and the
        # probes that read them are not attached (probe_table says so)
        flags += [f"-D{name}={self.offsets.get(name, 0)}" for name in sorted(set(BTF_OFFSETS.values()))]
        hf = hole_field(self.root) if self.root else None
        if hf == "zero_page":
            flags.append("-DPMT_HOLE_ZERO_PAGE=1")
        for r in self.resolved:
            if r.mechanism == "fentry" and r.winner:
                flags.append(f"-DPMT_FENTRY_{r.winner}=1")  # bcc attaches it when it loads
            if r.point.kind == "tracepoint" and r.winner and r.point.name not in self.skip and r.mechanism != "counted":
                # the load-hole events need the field name
                if r.point.name.startswith("dax_pmd_load_hole") and not hf:
                    continue
                how = {"raw_tracepoint": "RAW", "tp_btf": "BTF"}.get(r.mechanism, "TP")
                flags.append(f"-DPMT_{how}_{r.point.name}=1")
        return flags

    def source(self):
        with open(bpf_file("pmemtrace.bpf.c")) as f:
            return f.read()

    def missing(self):
        m = [f"{r.point.name} ({r.note})" for r in self.resolved if r.winner is None]
        m += [f"{n} (attach failed: {e})" for n, e in self.failed]
        return "; ".join(m)

    def probe_table(self):
        out = []
        for r in self.resolved:
            d = r.to_json()
            d["attached"] = r.winner is not None and r.point.name not in dict(self.failed)
            out.append(d)
        return out

    def _plan(self):
        """What decides which programs attach where (part of the cache key)."""
        return [[r.point.name, r.mechanism, r.winner, r.function] for r in self.resolved] + [sorted(self.skip)]

    def start(self):
        if os.geteuid() != 0:
            raise PrivilegeError("pmemtrace watch needs root (or CAP_BPF+CAP_PERFMON+CAP_SYS_ADMIN) for bcc: try sudo")
        if not any(r.winner for r in self.resolved if r.point.required):
            raise KernelFeatureMissing("this kernel has no fs_dax tracepoints")
        if not all(f in self.offsets for f in BTF_OFFSETS.values()):
            raise KernelFeatureMissing(
                "the kernel's BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF) that the bcc "
                "probes read struct offsets from: use --backend tracefs"
            )
        try:
            self._load_or_compile()
        except bpfsys.BpfError as e:
            # only tp_btf loading raises it through: a kernel whose
            # verifier refuses them gets raw tracepoints (probe reads)
            self.close()
            self.tp_btf_refused = str(e)
            self.failed, self.cached = [], False
            was_btf = {r.point.name for r in self.resolved if r.mechanism == "tp_btf"}
            self.resolved = attach_plan(
                self.functions, self.tracepoints, self.aggregate, self.offsets, btf_tracepoints=False
            )
            for r in self.resolved:
                if r.point.name in was_btf and r.winner:  # only those the refusal moved
                    r.note = f"tp_btf refused: {e}"[:200]
            self._load_or_compile()
        try:
            maps = self.loaded.maps if self.loaded else self._bcc_maps()
            # read through the map's memory, not bcc's per-record callback
            self.ring = RingReader(maps["events"], self.ringbuf_pages * mmap.PAGESIZE)
            self.maps = {n: bpfsys.Map(fd) for n, fd in maps.items() if n in ("lost", "counts", "kinds", "comms")}
            if "slots" in maps:
                info = bpfsys.map_info(maps["slots"])
                self.slots = SlotTable.open(maps["slots"], info["max_entries"], self._alive)
        except BaseException:
            self.close()
            raise

    def _load_or_compile(self):
        """The cached program for this plan loaded, else bcc compiles it."""
        flags = self.cflags()
        key = bpfcache.key([bpf_file("pmemtrace.bpf.c"), bpf_file("pmemtrace.h")], flags, self._plan(), self.root)
        entry = bpfcache.lookup(key)
        if entry is not None:
            try:
                self.loaded = bpfcache.load(entry)
                self.failed = [tuple(f) for f in entry.get("failed", [])]
                self.cached = True
            except bpfsys.BpfError:
                self.loaded = None  # compile below (and replace the entry)
        if self.loaded is None:
            self._compile(flags, key)

    def _compile(self, flags, key):
        """bcc compiles and attaches the program; what it loaded is saved
        for the next start (bpfcache)."""
        try:
            from bcc import BPF
        except ImportError:
            raise KernelFeatureMissing(
                "bcc is not importable: apt install python3-bpfcc and run pmemtrace with /usr/bin/python3"
            ) from None
        try:
            self.bpf = BPF(src_file=bpf_file("pmemtrace.bpf.c").encode(), cflags=flags)
        except Exception as e:  # bcc raises bare Exception
            msg = str(e)
            if "super-user" in msg or "Operation not permitted" in msg:
                raise PrivilegeError("bcc needs root (or CAP_BPF+CAP_PERFMON+CAP_SYS_ADMIN): try sudo") from None
            raise ProbeAttachError(f"bcc could not compile bpf/pmemtrace.bpf.c: {msg.strip()[-300:]}") from None
        # the programs bcc attached when it loaded (by their names' prefix)
        programs = []
        for name in self.bpf.funcs:
            n = name.decode()
            if n.startswith("tracepoint__"):
                programs.append((n, bpfsys.PROG_TRACEPOINT, "tracepoint", n[12:].replace("__", ":")))
            elif n.startswith("raw_tracepoint__"):
                programs.append((n, bpfsys.PROG_RAW_TRACEPOINT, "raw_tracepoint", n[16:]))
            elif n.startswith("kfunc__"):
                programs.append((n, bpfsys.PROG_TRACING, "fentry", n[7:]))
        try:
            self._load_tp_btf(programs, flags)
            for r in self.resolved:
                if r.mechanism != "kprobe" or r.winner is None:
                    continue
                try:
                    self.bpf.attach_kprobe(event=r.winner, fn_name=r.function.encode())
                    programs.append((r.function, bpfsys.PROG_KPROBE, "kprobe", r.winner))
                    if r.point.retprobe:
                        self.bpf.attach_kretprobe(event=r.winner, fn_name=r.point.retprobe.encode())
                        programs.append((r.point.retprobe, bpfsys.PROG_KPROBE, "kretprobe", r.winner))
                except Exception as e:
                    self.failed.append((r.point.name, str(e).strip()[:120]))
        except BaseException:
            self.close()
            raise
        self._save(key, programs)

    def _load_tp_btf(self, programs, flags):
        """Load and attach the tp_btf programs bcc compiled (*flags* say
        which) and did not load (bcc has no tp_btf); a refusal raises
        bpfsys.BpfError."""
        from bcc import lib

        lic = lib.bpf_module_license(self.bpf.module)
        for r in self.resolved:
            if r.mechanism != "tp_btf" or f"-DPMT_BTF_{r.point.name}=1" not in flags:
                continue
            name = f"tpbtf__{r.point.name}"
            with bpfsys.quiet():
                fd = bpfsys.prog_load_tp_btf(self.bpf.dump_func(name.encode()), r.point.name, lic)
                try:
                    link = bpfsys.attach(fd, "tp_btf", r.point.name)
                except BaseException:
                    os.close(fd)
                    raise
            self._btf_programs.append((fd, link))
            programs.append((name, bpfsys.PROG_TRACING, "tp_btf", r.point.name))

    def _save(self, key, programs):
        """Keep what bcc loaded (bpfcache): best effort, a failure only
        means the next start compiles too."""
        try:
            entry = bpfcache.describe(
                self.bpf,
                [{"name": n, "type": ptype, "attach": [kind, t]} for n, ptype, kind, t in programs],
                list(TABLES),
            )
            if entry is not None:
                bpfcache.store(key, dict(entry, failed=self.failed))
        except (OSError, ValueError, bpfsys.BpfError):
            pass

    def _bcc_maps(self):
        from bcc import lib

        fds = {t: lib.bpf_table_fd(self.bpf.module, t.encode()) for t in TABLES}
        return {t: fd for t, fd in fds.items() if fd >= 0}

    def drain(self, timeout):
        """Records the ring buffer holds after *timeout* seconds.  They
        are submitted without a wake-up (BPF_RB_NO_WAKEUP), so there is
        nothing to wait on: sleep as long as the ring's fill rate allows
        (:mod:`.pacing`; not at all while records wait), then read what is
        there.

        The ring is emptied at every drain into a backlog of raw chunks
        (one copy per read, :meth:`RingReader.read_chunk`), and at most
        :data:`DECODE_BATCH` records are decoded per drain: decoding and
        recording cost ~10 us a record natively, several times that under
        emulation, so a --record reader behind a burst used to leave the
        ring full while it decoded (532,340 of 1.6 M records lost in a
        6.12 lab boot); now the ring is read again within one batch's
        time, and only a backlog beyond :data:`BACKLOG_RINGS` rings of
        records leaves it full (the kernel then drops and counts)."""
        if self.ring is None:
            return []
        self.pacer.wait(timeout, behind=self.behind)
        got = self._fill()
        self.pacer.read(got * STRIDE)
        batch = self._take(DECODE_BATCH)
        # one pass over the batch, a record tuple per event (no Event object,
        # no per-record callback): what --events/--record cost most of
        return [Record(*t) for t in decode_records(batch, slow=self._slow)]

    def _fill(self):
        """Move what the ring holds into the backlog; the records moved."""
        ring, moved = self.ring, 0
        room = BACKLOG_RINGS * self.ring.size - self._pending_bytes
        while room > 0:
            chunk, n = ring.read_chunk(EVENT_SIZE, room)
            if not n:
                # a record of another size (dropped, as ever), or one still
                # being written (nothing read: stop)
                odd = ring.read(limit=4096)
                if not odd:
                    break
                chunk = b"".join(bytes(HDR) + d[:EVENT_SIZE] for d in odd if len(d) >= EVENT_SIZE)
                n = len(chunk) // STRIDE
                if not n:
                    continue
            if self.record_tap is not None:
                self.record_tap(chunk)
                if self.tap_only:
                    moved += n  # written as read, never decoded (RecordingBcc)
                    continue
            self._pending.append([chunk, 0, n])
            self._pending_bytes += len(chunk)
            room -= len(chunk)
            moved += n
        self._ring_left = room <= 0
        return moved

    @property
    def behind(self):
        """Records read and not decoded yet, or left in the ring by a read
        that filled the backlog: the next drain does not wait."""
        return bool(self._pending) or self._ring_left

    def _take(self, limit):
        """Up to *limit* records' data from the front of the backlog."""
        out = []
        pending = self._pending
        while pending and len(out) < limit:
            ent = pending[0]
            chunk, i, n = ent
            k = min(n - i, limit - len(out))
            out.extend(chunk[o + HDR : o + HDR + EVENT_SIZE] for o in range(i * STRIDE, (i + k) * STRIDE, STRIDE))
            if i + k == n:
                pending.popleft()
                self._pending_bytes -= len(chunk)
            else:
                ent[1] = i + k
        return out

    def counts(self):
        """What the kernel counted since the last call (``--aggregate``):
        ``(rows, by_name)``, rows a list of :class:`CountedRow` with the
        increments per mapping, by_name {event name: increment}.

        A mapping of a process that is gone is given back once its final
        count is reported: its hash entry is read one interval after the
        read that found the process gone (no program of it can still be
        adding then), deleted, and forgotten here, as its slots are
        (slots.py), so a watch left running keeps state for the mappings
        of live processes, not of every process it ever saw."""
        counts, kinds, comms = (self.maps.get(n) for n in ("counts", "kinds", "comms"))
        if not self.aggregate or counts is None or kinds is None:
            return [], {}
        rows = []
        ncount = len(KERNEL_COUNTERS)
        alive: dict[int, bool] = {}

        def gone(tgid):
            if tgid not in alive:
                alive[tgid] = self._alive(tgid)
            return not alive[tgid]

        # a key's total: its slots' counters plus its hash entry's (slots.py)
        totals = self.slots.totals() if self.slots is not None else {}
        held = set(self.slots.held) if self.slots is not None else set()
        dying = set()
        for kb in counts.all_keys():
            value = counts.get(kb)
            if value is None:
                continue
            key = _KEY.unpack(kb)
            total = totals.setdefault(key, [0] * ncount)
            for v in counts.per_cpu(value):
                for i, n in enumerate(_COUNTS.unpack_from(v)):
                    total[i] += n
            if key in self._dying:
                counts.delete(kb)  # final: read an interval after its process was gone
            elif self._give_back and gone(key[0]):
                dying.add(key)  # read once more at the next interval, then deleted
            else:
                held.add(key)
        held |= dying
        self._dying = dying
        given_back = 0
        for key, total in totals.items():
            before = self._counted.get(key)
            self._counted[key] = total
            delta = total if before is None else [a - b for a, b in zip(total, before)]
            tgid = key[0]
            if any(delta):
                comm = self._comms.get(tgid)
                if comm is None:
                    got = comms.get(_U32.pack(tgid)) if comms is not None else None
                    comm = got[:16].split(b"\0", 1)[0].decode("utf-8", "replace") if got else ""
                    self._comms[tgid] = comm
                rows.append(CountedRow(tgid, comm, *key[1:], *delta))
            if self._give_back and key not in held and gone(tgid):
                # reported whole: nothing of it is left in the kernel
                del self._counted[key]
                if self.slots is not None:
                    self.slots.forget(key)
                self._comms.pop(tgid, None)
                given_back += 1
        if given_back:
            log.debug("gave back the counters of %d mapping(s) of gone processes", given_back)
        by_name = {}
        for kind, name in KINDS.items():
            if kind >= 64:
                continue
            got = kinds.get(_U32.pack(kind))
            n = sum(_U64.unpack_from(v)[0] for v in kinds.per_cpu(got)) if got else 0
            d = n - self._kinds_seen.get(kind, 0)
            if d:
                by_name[name] = d
                self._kinds_seen[kind] = n
        return rows, by_name

    def record_info(self):
        """What a binary recording's header says of the records
        (pagerecord.record_info), or None in the counting session (the
        ring then carries only what counting leaves to user space)."""
        if self.aggregate or self.ring is None:
            return None
        from .pagerecord import record_info

        return record_info(STRIDE, HDR)

    def stop(self):
        """Nothing to pause: BPF programs detach in :meth:`close`; the
        session's final drain is bounded instead."""

    def unread(self):
        """Records still in the ring buffer (what a final drain cut short
        leaves: counted as lost by the session)."""
        backlog = sum(n - i for _c, i, n in self._pending)
        return backlog + (self.ring.unread() if self.ring is not None else 0)

    def lost(self):
        m = self.maps.get("lost")
        got = m.get(_U32.pack(0)) if m is not None else None
        return sum(_U64.unpack_from(v)[0] for v in m.per_cpu(got)) if got else 0

    def close(self):
        if self.ring is not None:
            self.ring.close()
            self.ring = None
        self.maps = {}
        if self.slots is not None:
            self.slots.close()
            self.slots = None
        if self.loaded is not None:
            self.loaded.close()
            self.loaded = None
        for fd, link in reversed(self._btf_programs):
            link.close()
            os.close(fd)
        self._btf_programs = []
        if self.bpf is not None:
            self.bpf.cleanup()
            self.bpf = None


class RecordingBcc:
    """bcc's ``watch --record``: the counting program feeds the views as
    the default watch does (counts in the kernel, fallbacks and what
    attribution needs through its ring), and a second, every-event program
    fills a ring of its own whose records are written to the recording as
    read and never decoded.  One session decoding and viewing every record
    in Python cost 3.4 times the untraced PMD workload on 6.12 (docs/watch.md).

    Start compiles (or loads from the cache) both programs.  Its losses are
    both rings' (:meth:`lost`); the recording's own are the every-event
    ring's (:meth:`record_lost`)."""

    name = "bcc"

    def __init__(self, counting: BccBackend, every: BccBackend):
        self.counting, self.every = counting, every
        every.tap_only = True

    @property
    def record_tap(self):
        return self.every.record_tap

    @record_tap.setter
    def record_tap(self, tap):
        self.every.record_tap = tap

    @property
    def cached(self):
        return self.counting.cached and self.every.cached

    def record_info(self):
        return self.every.record_info()

    def record_lost(self):
        return self.every.lost()

    def start(self):
        self.counting.start()
        try:
            self.every.start()
        except BaseException:
            self.counting.close()
            raise

    def drain(self, timeout):
        # the wait the faster-filling ring allows (the every-event one, mostly)
        c, e = self.counting, self.every
        min(c.pacer, e.pacer, key=lambda p: p.nap).wait(timeout, behind=self.behind)
        out = c.drain(0)
        e.drain(0)  # to the recording
        return out

    @property
    def behind(self):
        return self.counting.behind or self.every.behind

    def counts(self):
        return self.counting.counts()

    def missing(self):
        return self.counting.missing()

    def probe_table(self):
        return self.counting.probe_table()

    def stop(self):
        pass

    def unread(self):
        return self.counting.unread() + self.every.unread()

    def lost(self):
        return self.counting.lost() + self.every.lost()

    def close(self):
        try:
            self.every.close()
        finally:
            self.counting.close()
