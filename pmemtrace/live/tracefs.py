"""tracefs: the one module that talks to ftrace.

* **where it is**: :func:`tracefs_root` (``<sys>/kernel/tracing``, else the
  old ``<sys>/kernel/debug/tracing``), :func:`fs_dax_tracepoints`;
* **private instances** (:class:`Instance`): everything pmemtrace enables
  happens in ``instances/pmemtrace-<pid>-<purpose>``, so the global trace
  buffer and other users' settings are never touched, and removing the
  instance disables everything it enabled;
* **crash recovery**: the pid in every name lets :func:`remove_orphans`
  (run by each start, and by ``pmemtrace cleanup``) remove what a killed
  pmemtrace left behind;
* **what a fault ended as**: :func:`fault_outcome`, :func:`result_class`
  and :func:`chunk_outcome`, the one classifier of fs_dax results used by
  ``watch``/``replay`` views, ``check`` and ``diagnose --observe``;
* **the tracefs backends**: :class:`TracefsBackend` (``watch``, a
  :class:`pmemtrace.live.session.Backend`) and :class:`TraceCapture`
  (``run``/``check``/``diagnose --observe``: the same backend, every event
  of one process, drained by a thread while the workload runs).
"""

import errno
import logging
import os
import re
import select
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import KernelFeatureMissing, PrivilegeError
from ..events import VM_FAULT, Event
from .pacing import Pacer
from .parse import FS_DAX_EVENTS, ParseStats, iter_trace_records

log = logging.getLogger(__name__)

FS_DAX_TRACEPOINTS = (
    "dax_pmd_fault",
    "dax_pmd_fault_done",
    "dax_pte_fault",
    "dax_pte_fault_done",
    "dax_pmd_load_hole",
    "dax_pmd_load_hole_fallback",
    "dax_load_hole",
    "dax_insert_pfn_mkwrite",
    "dax_insert_pfn_mkwrite_no_entry",
)

# ---------------------------------------------------------------------------
# Where tracefs is


def tracefs_root(sys_root: str = "/sys") -> Optional[str]:
    """The tracefs mount under *sys_root* (``/sys`` on a live host), or
    None: ``kernel/tracing`` (tracefs since 4.1) or the old debugfs path."""
    for rel in (("kernel", "tracing"), ("kernel", "debug", "tracing")):
        d = os.path.join(sys_root, *rel)
        if os.path.isdir(os.path.join(d, "events")):
            return d
    return None


def require_root(sys_root: str = "/sys") -> str:
    """:func:`tracefs_root` or a one-line KernelFeatureMissing."""
    root = tracefs_root(sys_root)
    if root is None:
        raise KernelFeatureMissing("tracefs is not mounted: mount -t tracefs nodev /sys/kernel/tracing")
    return root


def fs_dax_tracepoints(root: Optional[str]) -> set:
    """The fs_dax events this kernel has (empty without CONFIG_FS_DAX)."""
    d = os.path.join(root, "events", "fs_dax") if root else None
    if not d or not os.path.isdir(d):
        return set()
    return {e for e in os.listdir(d) if os.path.isdir(os.path.join(d, e))}


# ---------------------------------------------------------------------------
# What a fault ended as: the one classifier of fs_dax results

#: fs_dax events that say how a fault attempt ended (the entry events
#: ``dax_*_fault`` carry no result)
RESULT_EVENTS = (
    "dax_pmd_fault_done",
    "dax_pte_fault_done",
    "dax_pmd_load_hole",
    "dax_pmd_load_hole_fallback",
    "dax_load_hole",
)

_FALLBACK = VM_FAULT["FALLBACK"]
_SIGBUS = VM_FAULT["SIGBUS"]
_RETRY = VM_FAULT["RETRY"]


def result_class(name: str, result: int) -> str:
    """ok / sigbus / fallback / retry: what ``check`` compares.

    >>> result_class("dax_pmd_fault_done", VM_FAULT["FALLBACK"])
    'fallback'
    >>> result_class("dax_pmd_load_hole", 0)
    'ok'
    """
    if name.startswith("dax_pmd_load_hole"):
        return "ok"
    if result & _SIGBUS:
        return "sigbus"
    if result & _FALLBACK:
        return "fallback"
    if result & _RETRY:
        return "retry"
    return "ok"


def fault_outcome(name: str, result: int = 0) -> Optional[str]:
    """What one fs_dax event says the fault got: ``pmd`` (2 MiB mapped),
    ``fallback`` (the PMD attempt fell back; a PTE fault follows),
    ``sigbus``, ``pte`` (4 KiB, data or a zero page for a hole),
    ``huge-zero`` (a huge zero page for a PMD hole), or None for events
    inside a fault (entry events, ``*_load_hole_fallback``, mkwrite).

    A VM_FAULT_RETRY PMD result counts as ``pmd``: the fault is redone and
    its own ``_done`` event follows (views have always counted it so).

    >>> fault_outcome("dax_pmd_fault_done", VM_FAULT["NOPAGE"])
    'pmd'
    >>> fault_outcome("dax_pte_fault_done", VM_FAULT["SIGBUS"])
    'sigbus'
    """
    if name == "dax_pmd_fault_done":
        if result & _SIGBUS:
            return "sigbus"
        if result & _FALLBACK:
            return "fallback"
        return "pmd"
    if name == "dax_pte_fault_done":
        return "sigbus" if result & _SIGBUS else "pte"
    if name == "dax_pmd_load_hole":
        return "huge-zero"
    if name == "dax_load_hole":
        return "pte"
    return None


def chunk_outcome(events: Iterable[Event]) -> str:
    """``pmd`` / ``huge-zero`` / ``pte`` / ``none`` for the fs_dax events
    of one 2 MiB chunk (``diagnose --observe``): the first PMD or huge zero
    page wins, else any other fault makes it ``pte``."""
    out = "none"
    for e in events:
        kind = fault_outcome(e.name, e.fields.get("result", 0))
        if kind in ("pmd", "huge-zero"):
            return kind
        if kind is not None:
            out = "pte"  # a fallback, a 4 KiB fault or a SIGBUS
    return out


# ---------------------------------------------------------------------------
# Names that carry the owner's pid, and removing what dead owners left

#: tracefs instances: ``pmemtrace-<pid>-<purpose>`` (``pmemtrace-<pid>``
#: before 0.2); kprobe events: ``pmemtrace_<pid>_<name>``
INSTANCE_RE = re.compile(r"^pmemtrace-(?P<pid>\d+)(?:-[A-Za-z0-9_.-]+)?$")
KPROBE_NAME_RE = re.compile(r"^pmemtrace_(?P<pid>\d+)_\w+$")
#: bcc's own kprobe events, made only when the kernel has no perf kprobe
#: PMU (bcc src/cc/libbpf.c bpf_attach_probe(): ``<p|r>_<function>_bcc_<pid>``)
BCC_KPROBE_RE = re.compile(r"^[pr]_(?P<function>\w+?)_bcc_(?P<pid>\d+)$")


def instance_name(purpose: str, pid: Optional[int] = None) -> str:
    """``pmemtrace-<pid>-<purpose>``: a name :func:`remove_orphans` can
    give back once *pid* is gone."""
    return f"pmemtrace-{os.getpid() if pid is None else pid}-{purpose}"


def pid_alive(pid: int) -> bool:
    """True unless no process *pid* exists in this pid namespace (an
    instance made from another pid namespace looks orphaned here)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def in_initial_pid_namespace(proc_root: str = "/proc") -> bool:
    """True when this process's pid numbers are the kernel's own, as BPF
    programs see them (bpf_get_current_pid_tgid): ``NSpid`` in
    /proc/self/status lists one number.  False in a container's pid
    namespace, and when it cannot tell."""
    try:
        with open(os.path.join(proc_root, "self", "status")) as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return len(line.split()) == 2
    except OSError:
        pass
    return False


def _write(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except PermissionError:
        raise PrivilegeError(f"cannot write {path}: tracing needs root (try sudo)") from None


def _append(path: str, text: str) -> None:
    # O_APPEND without a seek: kprobe_events refuses lseek() to the end (EINVAL)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _quiet_and_remove(path: str) -> None:
    """Disable an instance's tracing and events, then remove it."""
    for rel, value in (("tracing_on", "0"), ("events/enable", "0"), ("set_event_pid", "")):
        p = os.path.join(path, rel)
        if not os.path.exists(p):  # every instance has them; never create files
            continue
        try:
            with open(p, "w") as f:
                f.write(value)
        except OSError:
            pass
    os.rmdir(path)  # the kernel frees the buffers and event files with it


@dataclass
class Orphan:
    kind: str  # "instance" | "kprobe"
    name: str
    pid: int
    removed: bool = False
    error: Optional[str] = None

    def describe(self) -> str:
        what = f"tracefs instance {self.name}" if self.kind == "instance" else f"kprobe event {self.name}"
        if self.removed:
            return f"removed {what} (pid {self.pid} is gone)"
        return f"could not remove {what} (pid {self.pid} is gone): {self.error}"


def find_orphans(root: Optional[str] = None, probe_functions: Sequence[str] = ()) -> list[Orphan]:
    """What dead pmemtrace processes left in tracefs *root*: instances and
    kprobe events whose name carries a pid that no longer exists.  bcc's
    fallback kprobe events count only for a function of *probe_functions*
    (pmemtrace's probe table), so another tool's are never touched."""
    root = root or tracefs_root()
    out: list[Orphan] = []
    if root is None:
        return out
    try:
        names = sorted(os.listdir(os.path.join(root, "instances")))
    except OSError:
        names = []
    for name in names:
        m = INSTANCE_RE.match(name)
        if m and not pid_alive(int(m.group("pid"))):
            out.append(Orphan("instance", name, int(m.group("pid"))))
    try:
        with open(os.path.join(root, "kprobe_events")) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    funcs = set(probe_functions)
    for line in lines:
        # "p:kprobes/p_vmf_insert_pfn_pmd_bcc_1234 vmf_insert_pfn_pmd"
        head = line.split(None, 1)[0] if line.strip() else ""
        if ":" not in head:
            continue
        event = head.split(":", 1)[1]
        group, _, name = event.rpartition("/")
        m = KPROBE_NAME_RE.match(name)
        if m is None:
            b = BCC_KPROBE_RE.match(name)
            m = b if b is not None and b.group("function") in funcs else None
        if m and not pid_alive(int(m.group("pid"))):
            out.append(Orphan("kprobe", f"{group}/{name}" if group else name, int(m.group("pid"))))
    return out


def remove_orphans(root: Optional[str] = None, probe_functions: Sequence[str] = ()) -> list[Orphan]:
    """Remove what :func:`find_orphans` finds; returns each with
    ``removed`` or ``error`` set."""
    root = root or tracefs_root()
    if root is None:  # no tracefs: find_orphans() finds nothing either
        return []
    found = find_orphans(root, probe_functions)
    for o in found:
        try:
            if o.kind == "instance":
                _quiet_and_remove(os.path.join(root, "instances", o.name))
            else:
                try:
                    _write(os.path.join(root, "events", o.name, "enable"), "0")
                except OSError:
                    pass
                _append(os.path.join(root, "kprobe_events"), f"-:{o.name}\n")
            o.removed = True
        except OSError as e:
            o.error = e.strerror or str(e)
    return found


def remove_orphans_and_report(root: Optional[str] = None) -> list[Orphan]:
    """What every tracing start runs first: remove what dead pmemtrace
    processes left (any probe-table function counts for bcc's kprobe
    events) and say so in one line on stderr (a logging warning)."""
    from .probes import probe_functions

    try:
        found = remove_orphans(root, probe_functions())
    except OSError as e:  # never stop a start for this
        log.warning("pmemtrace: could not look for leftovers of killed runs: %s", e)
        return []
    if found:
        done = [o for o in found if o.removed]
        failed = [o for o in found if not o.removed]
        pids = sorted({o.pid for o in found})
        msg = (
            f"pmemtrace: removed {len(done)} leftover(s) of killed pmemtrace run(s) "
            f"(pid {', '.join(map(str, pids))}): {', '.join(o.name for o in done) or '-'}"
        )
        if failed:
            msg += f"; could not remove {', '.join(o.name for o in failed)} ('pmemtrace cleanup' says why)"
        log.warning("%s", msg)
    return found


# ---------------------------------------------------------------------------
# A private instance


def read_available(fd: int, chunk: int = 1 << 20, limit: int = 16 << 20) -> list[bytes]:
    """What a non-blocking ``trace_pipe`` fd has now (a list of bytes), up
    to about *limit* bytes.  A read of trace_pipe returns at most one page
    (kernel/trace/trace.c tracing_read_pipe() caps cnt at PAGE_SIZE - 1), so
    a short read does not mean the pipe is empty: read until EAGAIN."""
    chunks = []
    total = 0
    while total < limit:
        try:
            b = os.read(fd, chunk)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                break
            raise
        if not b:
            break
        chunks.append(b)
        total += len(b)
    return chunks


def _per_cpu_stats(instance: str, keys: tuple) -> int:
    """The sum over ``per_cpu/cpu*/stats`` of the counters named *keys*."""
    n = 0
    d = os.path.join(instance, "per_cpu")
    try:
        for cpu in os.listdir(d):
            with open(os.path.join(d, cpu, "stats")) as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k.strip() in keys:
                        n += int(v.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return n


def instance_losses(instance: str) -> int:
    """Events a tracefs instance's ring buffer lost: the per-CPU ``overrun``
    (overwritten, the default overwrite mode) plus ``dropped events``
    (refused when full, overwrite off), from ``per_cpu/cpu*/stats``."""
    return _per_cpu_stats(instance, ("overrun", "dropped events"))


def instance_unread(instance: str) -> int:
    """Events still in a tracefs instance's ring buffer (``entries``)."""
    return _per_cpu_stats(instance, ("entries",))


class Instance:
    """``instances/pmemtrace-<pid>-<purpose>``: create, configure, read
    ``trace_pipe`` until EAGAIN, count losses, remove.

    Every method that writes raises PrivilegeError (one line) when tracefs
    is not writable; :meth:`close` is idempotent and never raises."""

    def __init__(self, purpose: str, root: Optional[str] = None, what: str = "tracing"):
        self.root = root or require_root()
        self.what = what  # for messages: "pmemtrace watch", "--observe"...
        self.path = os.path.join(self.root, "instances", instance_name(purpose))
        self.fd: Optional[int] = None
        self.created = False

    def _need_root(self) -> PrivilegeError:
        return PrivilegeError(f"{self.what} needs root to use tracefs (try sudo)")

    def create(self) -> None:
        if os.geteuid() != 0 and not os.access(os.path.join(self.root, "instances"), os.W_OK):
            raise self._need_root()
        # Marked ours before mkdir returns: a signal that lands right after it
        # (mkdir of an instance takes seconds on kernels before eventfs, 6.6,
        # and the directory is visible meanwhile) must still remove it.
        self.created = True
        try:
            os.mkdir(self.path)
        except PermissionError:
            self.created = False
            raise self._need_root() from None
        except FileExistsError:
            pass  # ours (same pid): reuse it
        except OSError as e:
            self.created = False
            raise KernelFeatureMissing(f"cannot create a tracefs instance {self.path}: {e.strerror}") from None

    def write(self, rel: str, value: str) -> None:
        _write(os.path.join(self.path, rel), value)

    def set_buffer_kb(self, kb: int) -> Optional[str]:
        """Per-CPU buffer size; a note when the kernel refuses it (ENOMEM:
        it keeps its size, and losses are still counted)."""
        try:
            self.write("buffer_size_kb", str(kb))
        except OSError as e:
            return f"buffer of {kb} KiB per CPU refused ({e.strerror})"
        return None

    def buffer_kb(self) -> int:
        """The per-CPU buffer's size in KiB as the kernel has it (0 when
        unreadable); ``buffer_size_kb`` may say "7 (expanded: 1408)"."""
        try:
            with open(os.path.join(self.path, "buffer_size_kb")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def follow_pid(self, pid: int, proc_root: str = "/proc") -> None:
        """Only events of *pid*'s threads and of the children they fork."""
        tids = [str(pid)]
        try:
            tids = os.listdir(os.path.join(proc_root, str(pid), "task")) or tids
        except OSError:
            pass
        self.write("set_event_pid", " ".join(tids))
        if os.path.exists(os.path.join(self.path, "options", "event-fork")):
            self.write("options/event-fork", "1")

    def enable(self, system: str, events: Optional[Iterable[str]] = None) -> list[str]:
        """Enable *events* of *system* (all of it when None); returns what
        was enabled."""
        if events is None:
            self.write(f"events/{system}/enable", "1")
            return [system]
        done = []
        for ev in events:
            self.write(f"events/{system}/{ev}/enable", "1")
            done.append(ev)
        return done

    def open_pipe(self) -> int:
        self.fd = os.open(os.path.join(self.path, "trace_pipe"), os.O_RDONLY | os.O_NONBLOCK)
        return self.fd

    def wait(self, timeout: float) -> bool:
        """True when trace_pipe has data within *timeout* seconds."""
        assert self.fd is not None, "open_pipe() first"
        r, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        return bool(r)

    def read(self) -> list[bytes]:
        return read_available(self.fd) if self.fd is not None else []

    def pause(self) -> None:
        """tracing_on=0 in this instance: nothing new, what is buffered stays readable."""
        try:
            self.write("tracing_on", "0")
        except OSError:
            pass

    def losses(self) -> int:
        return instance_losses(self.path)

    def close(self) -> None:
        """Close the pipe, disable everything, remove the instance."""
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None
        if self.created and os.path.isdir(self.path):
            try:
                _quiet_and_remove(self.path)
            except OSError as e:
                log.warning("could not remove tracefs instance %s: %s", self.path, e.strerror)
        self.created = False


# ---------------------------------------------------------------------------
# The watch backend


class TracefsBackend:
    """fs_dax tracepoints through a private instance (``watch`` when bcc
    cannot run: no kernel headers, no kprobes, no bcc).  It sees the fs_dax
    events only: no insert functions, get_dev_pagemap, GUP or device-dax
    faults (those need kprobes)."""

    name = "tracefs"

    def __init__(
        self,
        pid: Optional[int] = None,
        buffer_kb: int = 65536,
        root: Optional[str] = None,
        skip: Iterable[str] = (),
        file_filter: Optional[tuple] = None,
        purpose: str = "watch",
        what: str = "pmemtrace watch",
        tracepoints: Sequence[str] = FS_DAX_TRACEPOINTS,
    ):
        self.root = root or require_root()
        self.tracepoints = fs_dax_tracepoints(self.root)
        if not {"dax_pmd_fault_done", "dax_pte_fault_done"} <= self.tracepoints:
            raise KernelFeatureMissing("this kernel has no fs_dax tracepoints (CONFIG_FS_DAX is off)")
        self.pid = pid
        self.skip = set(skip)  # tracepoints not to enable
        self.wanted = tuple(tracepoints)
        self.buffer_note: Optional[str] = None
        self.buffer_kb = buffer_kb
        #: (kernel dev_t, inode or None) of --path: an event filter drops
        #: other files' events in the kernel, before they are formatted
        self.file_filter = file_filter
        self.inst = Instance(purpose, self.root, what=what)
        self.instance = self.inst.path
        self.stats = ParseStats()
        self._partial = ""
        self.enabled: list[str] = []
        self.raw: Optional[Any] = None  # a rawpipe.RawPipes once started, unless the text pipe is read
        self._behind = False  # the last binary read found records or left pages undecoded
        #: when the binary reader reads next: by the fill rate of a CPU's
        #: buffer (as asked; start() sets what the kernel kept)
        self.pacer = Pacer(buffer_kb * 1024)
        self.counting: Optional[Any] = None  # a fasttext.RawCounting once count_into() took the views
        #: the records kept in time order from one drain to the next (run,
        #: check and --record keep every event; RawPipes.read(hold=True))
        self.in_time_order = False
        self.reader = ""  # trace_pipe_raw (binary, per CPU) or trace_pipe (text)
        #: called with each round of pages read, before it is decoded (a
        #: page recording: record.Recorder.attach)
        self.page_tap: Optional[Any] = None

    def missing(self) -> str:
        return (
            "sees fs_dax tracepoints only; no PMD insert, get_dev_pagemap, GUP or "
            "device-dax counts (those need bcc and kprobes)" + (f"; {self.buffer_note}" if self.buffer_note else "")
        )

    def probe_table(self) -> list:
        return [
            {"point": tp, "kind": "tracepoint", "winner": f"fs_dax:{tp}" if tp in self.tracepoints else None}
            for tp in FS_DAX_TRACEPOINTS
        ]

    def start(self) -> None:
        try:
            self.inst.create()
            self.buffer_note = self.inst.set_buffer_kb(self.buffer_kb)
            self.pacer.capacity = self.inst.buffer_kb() * 1024 or self.pacer.capacity
            if self.pid:
                self.inst.follow_pid(self.pid)
            wanted = [tp for tp in self.wanted if tp in self.tracepoints and tp not in self.skip]
            if self.file_filter is not None:
                dev, ino = self.file_filter
                expr = f"dev == {int(dev)}" + (f" && ino == {int(ino)}" if ino else "")
                for tp in wanted:  # every fs_dax event has dev and ino
                    self.inst.write(f"events/fs_dax/{tp}/filter", expr)
            self.enabled = self.inst.enable("fs_dax", wanted)
            self._open_reader(wanted)
        except BaseException:
            self.close()
            raise

    def _open_reader(self, events: list) -> None:
        """Each CPU's ``trace_pipe_raw`` in binary (:mod:`.rawpipe`): no
        text formatted by the kernel, none parsed here; the all-CPU text
        ``trace_pipe`` only where the binary layout cannot be read."""
        from .ftrace_binary import FormatError
        from .rawpipe import RawPipes

        try:
            self.raw = RawPipes(self.root, self.inst.path, events, self.stats)
            self.reader = "trace_pipe_raw"
        except (FormatError, OSError) as e:
            log.debug("binary per-CPU reads unavailable (%s): reading trace_pipe", e)
            self.inst.open_pipe()
            self.reader = "trace_pipe"

    @property
    def running(self) -> bool:
        return self.raw is not None or self.inst.fd is not None

    def _parse(self, chunks: list[bytes]) -> list:
        """Records of the complete lines; the fault lines are tokenized
        without a regular expression (parse.tokenize_fault_line)."""
        from .session import Record

        text = self._partial + b"".join(chunks).decode("utf-8", "replace")
        lines = text.split("\n")
        self._partial = lines.pop()
        return [
            Record(name, fields, ts, pid, comm, cpu, pid, "tracefs")
            for name, fields, ts, pid, comm, cpu in iter_trace_records(lines, self.stats)
        ]

    def drain(self, timeout: float) -> list:
        """Records (:class:`pmemtrace.live.session.Record`) read within
        *timeout* seconds (a list, maybe empty)."""
        if not self.running:
            return []
        # Sleep, then read what is there, rather than wait in select(): a
        # reader waiting on the all-CPU trace_pipe is woken by every burst
        # (the kernel ignores the fill watermark for it), and each wake-up
        # is queued from the faulting task; with nobody waiting, none is.
        # The text pipe reads again at once after a read that found
        # records; the binary reader waits as the buffers' fill rate allows
        # (pacing.Pacer) and reads at once only while pages wait.
        if self.raw is None:
            if timeout > 0 and not self._behind:
                time.sleep(timeout)
            return self._parse(self.inst.read())
        self.pacer.wait(timeout, behind=self.raw.more_waiting())
        rnd = self.raw.next_round()
        self._pace(rnd)
        if rnd and self.page_tap is not None:
            self.page_tap(rnd)
        if self.counting is not None:
            if rnd:
                self.counting.round(rnd)  # counted into the views; the rest fed to the session
            self._behind = bool(rnd) or self.raw.pending()
            return []
        from .session import Record

        got = [
            Record(name, fields, ts, pid, comm, cpu, pid, "tracefs")
            for name, fields, ts, pid, comm, cpu in self.raw.records(rnd, hold=self.in_time_order)
        ]
        self._behind = bool(got) or self.raw.pending()
        return got

    def _pace(self, rnd: list) -> None:
        """The next wait follows how fast the busiest CPU's buffer filled
        (:mod:`.pacing`); a round holds one read per CPU."""
        self.pacer.read(max((len(pages) for _cpu, pages in rnd), default=0))

    def page_info(self) -> Optional[dict]:
        """What a page recording's header says of the pages (pagerecord.page_info),
        or None where the pages are not read (the text pipe)."""
        if self.raw is None:
            return None
        from .pagerecord import page_info

        return page_info(self.root, self.raw.instance, self.raw.events, self.raw.page_size)

    def count_into(self, views: Any, feed: Any) -> bool:
        """Count the events into *views* (an Aggregator) in C from now on,
        handing each record Python must see to *feed* (``Session.feed``) at
        once: the binary reader on the compiled path
        (:class:`pmemtrace.live.fasttext.RawCounting`); :meth:`drain` then
        returns nothing.  False (records as before) where it cannot: the
        text pipe, no compiled module, ``PMEMTRACE_PURE_PYTHON=1``.

        The C side counts an event only into a row that a record fed before
        made, so the session's filter must depend on the pid, dev and
        inode alone (watch's ``--pid`` and ``--path``)."""
        if self.raw is None:
            return False
        from .fasttext import RawCounting

        self.counting = RawCounting.make(views, self.raw, feed)
        return self.counting is not None

    @property
    def behind(self) -> bool:
        """Pages read ahead and not decoded yet, or the last read found
        records: an empty drain does not mean the buffer is empty."""
        return self._behind

    def stop(self) -> None:
        """Stop producing (tracing_on=0 in our instance) so that a final
        drain can empty the pipe."""
        self.inst.pause()

    def unread(self) -> int:
        """Events still in the instance's buffer (what a final drain cut
        short leaves: counted as lost by the session)."""
        backlog = self.raw.backlog_events() if self.raw is not None else 0
        return backlog + instance_unread(self.inst.path)

    def lost(self) -> int:
        """Events the ring buffer lost (per-CPU stats) or [LOST] markers said."""
        return max(self.inst.losses(), self.stats.lost)

    def close(self) -> None:
        """Disable what we enabled and remove the instance (idempotent)."""
        if self.raw is not None:
            self.raw.close()
            self.raw = None
        self.counting = None
        self.inst.close()
        self.enabled = []


# ---------------------------------------------------------------------------
# run / check / diagnose --observe: every fs_dax event of one process


class TraceCapture:
    """Every fs_dax event of one pid (and of the children it forks), for
    ``pmemtrace run``/``check`` and ``diagnose --observe``.

    The capture path is watch's (:class:`TracefsBackend`: a private
    instance, each CPU's ``trace_pipe_raw`` decoded in binary, losses from
    the per-CPU stats), drained by a thread while the workload runs: a
    scenario can make 100,000 faults, and reading ``trace`` once at the end
    returned 24,230 of 99,104 events, the rest overwritten.  What the ring
    buffer lost, or a final drain left unread, is counted in :attr:`lost`.
    Problems are not raised: :attr:`reason` says why there is no
    (complete) trace, and starts with ``incomplete`` when events were lost
    or unreadable."""

    BUFFER_KB = 16384  # per CPU
    FINAL_DRAIN_SECONDS = 10.0
    JOIN_SECONDS = 120.0

    def __init__(self, purpose: str = "run", root: Optional[str] = None, what: str = "pmemtrace run"):
        self.reason: Optional[str] = None
        #: the exception behind :attr:`reason` (a caller that must not go
        #: on without a trace raises it: ``diagnose --observe``)
        self.error: Optional[BaseException] = None
        self.lost = 0
        self.backend: Optional[TracefsBackend] = None
        self._records: list = []
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        root = root or tracefs_root()
        if root is None:
            self.reason = "tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)"
            return
        try:
            # every fs_dax event the parsers read, the writebacks of MAP_SYNC too
            backend = TracefsBackend(
                root=root, buffer_kb=self.BUFFER_KB, purpose=purpose, what=what, tracepoints=FS_DAX_EVENTS
            )
            backend.in_time_order = True  # compared with the model in order
            backend.inst.create()  # now: a missing privilege is said before the workload starts
        except (OSError, PrivilegeError, KernelFeatureMissing) as exc:
            self.reason = f"cannot trace: {getattr(exc, 'strerror', None) or exc}"
            self.error = exc
            return
        self.backend = backend

    @property
    def dir(self) -> Optional[str]:
        return self.backend.inst.path if self.backend else None

    @property
    def reader(self) -> str:
        """``trace_pipe_raw`` (binary, per CPU) or ``trace_pipe`` (text)."""
        return self.backend.reader if self.backend else ""

    def start(self, pid: int) -> None:
        if self.backend is None:
            return
        self.backend.pid = pid
        try:
            self.backend.start()  # on failure it has removed its instance
        except (OSError, PrivilegeError, KernelFeatureMissing) as exc:
            self.reason = f"cannot enable fs_dax events: {getattr(exc, 'strerror', None) or exc}"
            self.error = exc
            self.backend = None
            return
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        backend = self.backend
        assert backend is not None  # set before the thread starts; close() joins it first
        while not self._stop.is_set():
            try:
                self._records += backend.drain(0.2)
            except OSError as exc:
                self.reason = f"incomplete: cannot read the trace: {exc.strerror}"
                return

    def stop(self) -> list[Event]:
        """Stop tracing and return every event, in time order; sets
        :attr:`lost` and, if events were lost, :attr:`reason`."""
        backend = self.backend
        if backend is None or not backend.running:
            return []
        backend.stop()
        self._stop.set()
        if self._thread is not None:
            # one drain is one bounded round; the thread must be done before
            # the final drain reads the same pipes and the records are taken
            self._thread.join(self.JOIN_SECONDS)
            if self._thread.is_alive():
                self.reason = self.reason or "incomplete: the trace reader did not stop"
                return []
            self._thread = None
        from .session import drain_remaining

        # what is left after tracing_on=0; what a drain cut short leaves is lost
        left = drain_remaining(backend, self._records.extend, self.FINAL_DRAIN_SECONDS)
        self.lost = backend.lost() + left
        if self.lost and self.reason is None:
            self.reason = f"incomplete: the ring buffer lost {self.lost} events ({self.BUFFER_KB} KiB per CPU)"
        events = [r.event() for r in self._records]
        self._records = []
        return events

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        if self.backend is not None:
            self.backend.close()
            self.backend = None


def trace_text(events: Iterable[Event]) -> str:
    """*events* as ``trace_pipe`` lines (``comm-pid [cpu] ts: name: fields``,
    the fields in the kernel's print fmt): what ``run --out`` keeps beside
    the case, and what ``replay`` reads back."""
    return "".join(
        f"{e.comm or '<...>'}-{e.pid or 0} [{e.cpu or 0:03d}] {e.ts or 0.0:.6f}: {e.name}: {e.format()}\n"
        for e in events
    )
