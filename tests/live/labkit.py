"""Helpers for the live tier (tests/live): the gate, the guest, tracefs.

Everything here runs INSIDE a lab guest (``pmemtrace lab test`` boots one
per kernel and runs ``pytest tests/live`` there).  Import from test modules
with ``from .labkit import ...``; most tests only need the fixtures of
``conftest.py`` (``lab_gate``, ``guest``, ``tracefs``).
"""

import contextlib
import json
import os
import re

import pytest

from pmemtrace.errors import LabError
from pmemtrace.events import Event
from pmemtrace.lab import guest as _guest

RUN_LIVE_ENV = "PMEMTRACE_RUN_LIVE_TESTS"
TRACEFS = "/sys/kernel/tracing"


def live_required():
    """True when ``PMEMTRACE_RUN_LIVE_TESTS=1``: skips become failures."""
    return os.environ.get(RUN_LIVE_ENV) == "1"


def skip_or_fail(reason):
    """Skip with *reason*, or fail with it when the live tier is required."""
    if live_required():
        pytest.fail(f"{reason} ({RUN_LIVE_ENV}=1 makes this a failure)", pytrace=False)
    pytest.skip(reason)


# ---------------------------------------------------------------------------
# The gate


class LabGate:
    """Probed once per session: can live tests run here, and on what?

    :ivar reason: None if they can, else a full sentence saying why not
    :ivar release: ``uname -r``
    :ivar series: ``6.1``, ``6.12`` or ``7`` (from the lab environment)
    :ivar modules: nvdimm/dax modules loaded by the probe
    :ivar nodax: True if a second region (namespace1.0) was booted
    """

    def __init__(self):
        self.release = os.uname().release
        self.series = os.environ.get("PMEMTRACE_LAB_SERIES")
        self.memmap = os.environ.get("PMEMTRACE_LAB_MEMMAP", "")
        self.modules = []
        self.nodax = False
        # the soft-reserved layout (lab run --soft-reserved): no NVDIMM, a
        # dax_hmem device-dax; only tests/live/test_softreserved*.py run there
        self.soft_reserved = os.environ.get("PMEMTRACE_LAB_SOFT_RESERVED", "")
        self.reason = self._probe()

    def _probe(self):
        if not _guest.in_guest():
            return (
                "these tests run only inside a pmemtrace lab guest (a Debian kernel "
                "booted under QEMU with memmap= pmem); run them with `pmemtrace lab test`"
            )
        if os.geteuid() != 0:
            return f"the lab guest must run the live tests as root, but the euid is {os.geteuid():d}"
        if self.soft_reserved:
            return self._probe_soft_reserved()
        try:
            self.modules = _guest.load_modules()
        except LabError as exc:
            return f"the nvdimm modules could not be loaded in the guest: {exc}"
        with open("/proc/iomem") as f:
            iomem = f.read()
        if "Persistent Memory" not in iomem:
            return "/proc/iomem shows no Persistent Memory range, so the kernel was booted without memmap=SIZE!START"
        if not os.path.exists("/sys/bus/nd/devices/namespace0.0"):
            return "no namespace0.0 appeared under /sys/bus/nd/devices after loading nd_e820"
        self.nodax = os.path.exists("/sys/bus/nd/devices/namespace1.0")
        return None

    def _probe_soft_reserved(self):
        # /proc/iomem names the range "Soft Reserved" up to 7.1 only (7.2 shows
        # the dax device alone), so the dax_hmem device is what counts
        try:
            self.modules = _guest.load_hmem_modules()
        except LabError as exc:
            return f"the soft-reserved range gave no dax_hmem device: {exc}"
        return None

    def check(self):
        if self.reason:
            skip_or_fail(self.reason)


# ---------------------------------------------------------------------------
# The guest: namespace and filesystem configurations, reused across tests


class Guest:
    """Configures namespace0.0 on request and remembers what is set up, so
    tests asking for the same configuration share one ``ndctl`` + ``mkfs``.

    Call ``guest.fsdax(...)``/``guest.devdax(...)`` in every test that needs
    it (cheap when nothing changes) rather than keeping a mount path in a
    module-scoped fixture: another test may reconfigure namespace0.0 in
    between (layout and devdax tests do)."""

    def __init__(self, gate):
        self.gate = gate
        self.release = gate.release
        self.series = gate.series
        self._config = None
        self._setup = None
        self._nodax = None

    # -- namespace0.0 ------------------------------------------------------

    def fsdax(self, map="mem", align="2M", fs="xfs", mkfs_options=None, mount=_guest.DAX_MOUNT):
        """namespace0.0 in fsdax mode with *fs* mounted ``-o dax`` at *mount*.

        Returns a dict: ``namespace`` (ndctl JSON), ``device``, ``mount``,
        ``fs``, ``mkfs_options``.  Reuses the current setup when identical.
        """
        if mkfs_options is None:
            mkfs_options = _guest.DEFAULT_MKFS_OPTIONS[fs]
        key = ("fsdax", map, align, fs, mkfs_options, mount)
        if self._config != key or not os.path.ismount(mount):
            self._teardown()
            ns = _guest.reconfigure("namespace0.0", "fsdax", map, align)
            fsinfo = _guest.make_fs("/dev/" + ns.get("blockdev", "pmem0"), fs, mkfs_options, mount)
            self._config, self._setup = key, dict(fsinfo, namespace=ns)
        return self._setup

    def namespace(self, mode="fsdax", map="mem", align="2M"):
        """namespace0.0 reconfigured (no filesystem); returns ndctl JSON, or
        raises LabError with ndctl's message if the kernel refuses it."""
        key = ("ns", mode, map, align)
        if self._config != key:
            self._teardown()
            self._config = None
            ns = _guest.reconfigure("namespace0.0", mode, map, align)
            self._config, self._setup = key, {"namespace": ns}
        return self._setup["namespace"]

    def devdax(self, align="2M"):
        """namespace0.0 in devdax mode; returns the character device path."""
        ns = self.namespace("devdax", "dev", align)
        devs = ns.get("daxregion", {}).get("devices", [])
        if not devs:
            raise LabError(f"ndctl created no dax device: {json.dumps(ns)}")
        return "/dev/" + devs[0]["chardev"]

    def _teardown(self):
        if self._setup and "mount" in self._setup:
            _guest.umount(self._setup["mount"])
        self._config = self._setup = None

    # -- the soft-reserved device-dax (dax_hmem) ----------------------------

    def hmem(self, align="2M"):
        """The dax_hmem device-dax of a soft-reserved boot, bound to
        device_dax with *align*; returns its character device path."""
        if not self.gate.soft_reserved:
            skip_or_fail(
                "this test needs the soft-reserved layout: the tier boots it for "
                "tests/live/test_softreserved_live.py (pmemtrace lab run --soft-reserved 2G)"
            )
        dev = _guest.hmem_devices()[0]
        _guest.set_dax_align(dev, align)
        return "/dev/" + dev

    # -- the non-DAX filesystem (second region) -----------------------------

    def nodax(self, mount=_guest.NODAX_MOUNT):
        """An ext4 without DAX on namespace1.0 (an O_DIRECT target whose I/O
        uses get_user_pages); skips/fails when no second region was booted."""
        if not self.gate.nodax:
            skip_or_fail(
                "this test needs a second pmem region for a non-DAX filesystem; "
                "boot with `pmemtrace lab test --nodax 1G` (the default)"
            )
        if self._nodax is None:
            ns1 = [n for n in _guest.namespaces() if n.get("dev") == "namespace1.0"]
            dev = "/dev/" + (ns1[0].get("blockdev", "pmem1") if ns1 else "pmem1")
            self._nodax = _guest.make_fs(dev, "ext4", "", mount, dax=False)
        return self._nodax["mount"]

    # -- reading what the kernel set up --------------------------------------

    @staticmethod
    def sysfs_attr(path, default=None):
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            return default

    def namespace_sysfs(self, ns="namespace0.0"):
        """Attributes of *ns* and of the pfn/dax device claiming it."""
        base = f"/sys/bus/nd/devices/{ns}"
        out = {
            a: self.sysfs_attr(f"{base}/{a}")
            for a in ("mode", "size", "resource", "holder", "holder_class", "force_raw")
        }
        holder = out.get("holder")
        if holder:
            hb = f"/sys/bus/nd/devices/{holder}"
            out["holder_attrs"] = {
                a: self.sysfs_attr(f"{hb}/{a}") for a in ("mode", "align", "resource", "size", "namespace")
            }
        return out

    def ndctl(self):
        return _guest.ndctl_list()

    def cleanup(self):
        self._teardown()
        if self._nodax:
            _guest.umount(self._nodax["mount"])
            self._nodax = None


# ---------------------------------------------------------------------------
# tracefs: fs_dax events of this process


_LINE_RE = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:[\w.]{4,5}\s+)?(?P<ts>\d+\.\d+):\s+(?P<event>\w+):\s?(?P<text>.*)$"
)


def parse_trace_lines(lines):
    """Trace text lines -> Events.  Uses pmemtrace.live.parse when present
    (full field decoding); else name, pid and the raw text only."""
    try:
        from pmemtrace.live.parse import parse_trace_text
    except ImportError:
        parse_trace_text = None
    if parse_trace_text is not None:
        evs = list(parse_trace_text(lines))
        for e in evs:
            e.source = "tracefs"
        return evs
    out = []
    for line in lines:
        m = _LINE_RE.match(line)
        if m:
            out.append(
                Event(
                    m.group("event"),
                    {},
                    ts=float(m.group("ts")),
                    pid=int(m.group("pid")),
                    comm=m.group("comm").strip(),
                    cpu=int(m.group("cpu")),
                    source="tracefs",
                )
            )
    return out


MARK = "pmemtrace-mark "
_MARK_RE = re.compile(r"tracing_mark_write: " + MARK + r"(?P<text>.*)$")


class Capture:
    """Trace lines captured by :meth:`Tracefs.capture`."""

    def __init__(self):
        self.lines = []

    def events(self, name=None, lines=None):
        evs = parse_trace_lines(self.lines if lines is None else lines)
        return [e for e in evs if name is None or e.name == name]

    def names(self):
        return [e.name for e in self.events()]

    def groups(self):
        """Lines split at :meth:`Tracefs.mark` markers: {marker text: [lines]}
        (lines before the first marker under ``None``)."""
        out, cur = {None: []}, None
        for ln in self.lines:
            m = _MARK_RE.search(ln)
            if m:
                cur = m.group("text")
                out[cur] = []
            else:
                out[cur].append(ln)
        return out

    @staticmethod
    def kprobe_hits(lines):
        """Our kprobe events (``pmt_*``) in *lines*: [(event, {arg: int})]."""
        from pmemtrace.fuzz.execute import kprobe_hit

        return [hit for hit in map(kprobe_hit, lines) if hit is not None]


class Tracefs:
    """Enable tracepoints, filtered to one pid (default: this process and its
    children), around a block of code; read the records back as Events."""

    def __init__(self, root=TRACEFS):
        self.root = root
        if not os.path.exists(os.path.join(root, "trace")):
            os.system(f"mount -t tracefs nodev {root} 2>/dev/null")

    def _w(self, rel, value):
        with open(os.path.join(self.root, rel), "w") as f:
            f.write(value)

    def has_event(self, system, event=None):
        p = os.path.join(self.root, "events", system)
        return os.path.isdir(os.path.join(p, event) if event else p)

    def format(self, system, event):
        with open(os.path.join(self.root, "events", system, event, "format")) as f:
            return f.read()

    @staticmethod
    def _append(path, text):
        # not open(path, "a"): Python seeks to the end, which kprobe_events
        # refuses with EINVAL
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def mark(self, text):
        """Write a marker into the trace (split later with Capture.groups())."""
        with open(os.path.join(self.root, "trace_marker"), "w") as f:
            f.write(MARK + text)

    @contextlib.contextmanager
    def kprobes(self, defs):
        """Define kprobe events ``{name: "p|r symbol args"}`` in group pmt
        (``pmt/<name>``), enabled by :meth:`capture` with ``events=["pmt"]``;
        removed afterwards.  Skips/fails when a symbol cannot be probed."""
        path = os.path.join(self.root, "kprobe_events")
        added = []
        try:
            for name, spec in defs.items():
                kind, rest = spec.split(" ", 1)
                try:
                    self._append(path, f"{kind}:pmt/{name} {rest}\n")
                except OSError as exc:
                    skip_or_fail(f"cannot add kprobe event {kind}:{rest!r} on {os.uname().release}: {exc}")
                added.append(name)
            yield
        finally:
            for name in added:
                try:
                    self._w(f"events/pmt/{name}/enable", "0")
                except OSError:
                    pass
                self._append(path, f"-:pmt/{name}\n")

    @contextlib.contextmanager
    def capture(self, systems=("fs_dax",), events=(), pid=None):
        """``with tracefs.capture() as cap: ...`` then ``cap.events()``.

        :param systems: event systems to enable whole (``fs_dax``)
        :param events: extra ``system/event`` names
        :param pid: only this pid (and its children); default this process
        """
        for s in systems:
            if not self.has_event(s):
                skip_or_fail(f"tracefs has no {s} events on {os.uname().release}")
        cap = Capture()
        self._w("tracing_on", "0")
        self._w("trace", "")
        self._w("set_event", "")
        self._w("set_event_pid", str(pid or os.getpid()))
        try:
            self._w("options/event-fork", "1")
        except OSError:
            pass
        for s in systems:
            self._w(f"events/{s}/enable", "1")
        for e in events:
            self._w(f"events/{e}/enable", "1")
        # markers come from this process too: keep them through the pid filter
        try:
            self._w("events/ftrace/print/enable", "1")
        except OSError:
            pass
        self._w("tracing_on", "1")
        try:
            yield cap
        finally:
            self._w("tracing_on", "0")
            with open(os.path.join(self.root, "trace")) as f:
                cap.lines = [ln.rstrip("\n") for ln in f if not ln.startswith("#")]
            self._w("set_event", "")
            self._w("set_event_pid", "")
            self._w("trace", "")
