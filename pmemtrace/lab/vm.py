"""Boot a lab kernel with emulated pmem under QEMU (TCG) and run a command.

The guest is started with virtme-ng (``vng``): it sees the host's root
filesystem read-only (with throw-away writable overlays on /etc, /usr,
/var, /lib, /tmp...: the guest writes there, the host never sees it), so the repo, its ``.venv`` and
the lab cache are all visible at the same paths as on the host.  Persistent
memory comes from ``memmap=<size>!<start>`` on the kernel command line: each
region becomes an e820 "legacy" pmem region (region0, region1...) with one
raw namespace (namespace0.0 -> /dev/pmem0...).

Output channels: the command's stdout reaches the host through virtme's
``virtme.stdout`` port; its stderr through a port of ours
(``pmemtrace.stderr``); the kernel console (vng ``--verbose``) goes to a log
file whose tail is shown when a boot fails or hangs.
"""

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from .. import units
from ..errors import LabError, UsageError
from . import kernels as _kernels

GiB = 1 << 30

#: Default emulated pmem: 1 GiB at physical address 4 GiB.
DEFAULT_MEMMAP = ("1G!4G",)

#: Default wall-clock limit for one boot + command (seconds).
DEFAULT_TIMEOUT = 900

#: Where guest-side helpers put the DAX filesystem and the non-DAX one.
DAX_MOUNT = "/tmp/pmem"
NODAX_MOUNT = "/tmp/nodax"

# Without KVM, QEMU runs one host thread per vCPU (MTTCG).  Live kernel text
# patching (text_poke_bp(): tracepoint static calls, kprobes, static keys)
# then crashed 6.12 guests now and then: "Oops: int3" in __schedule while
# tracepoint_probe_unregister() was patching, "Kernel panic - not syncing:
# Fatal exception in interrupt" (console of a lab run, 2026-11-22) -- another
# vCPU ran the temporary int3 after the patch was done.  Round-robin TCG
# (-accel tcg,thread=single) runs the vCPUs in one thread, so no vCPU ever
# sees half-patched code; the guest still has --cpus CPUs.

#: Extra kernel parameters per lab series.  5.10 under TCG now and then hung
#: right after the real-mode "Probing EDD ... ok" line, before the first
#: kernel message (QEMU idle, not starved); with ``nokaslr`` every boot came
#: up (docs/lab-findings.md, "Lab traps").  Only the decompressor's random
#: placement differs, so the fixed placement is what makes it reliable.
SERIES_APPEND = {"5.10": ("nokaslr",)}

#: A boot whose console stays silent this long before the command started is
#: hung (the 5.10 EDD hang printed nothing for minutes; a slow boot under
#: load still prints kernel and udev messages every few seconds).
BOOT_SILENCE = 300

#: Marker printed by virtme-ng-init right before it runs the command.
_SCRIPT_STARTED = "virtme-ng-init: starting script"

# q35 (what vng uses without KVM) puts at most 2 GiB of RAM below 4 GiB when
# the guest has >= 2.75 GiB; the rest starts at 4 GiB.
_Q35_LOWMEM = 2 * GiB


class BootError(LabError):
    """A boot failed or hung; :attr:`result` holds the console log,
    :attr:`hung` says the console went silent before the command started."""

    def __init__(self, message, result=None, hung=False):
        super().__init__(message)
        self.result = result
        self.hung = hung


def _wait(proc, console_path, timeout, silence=None, poll=2.0):
    """Wait for *proc*; ``"hung"`` (after killing nothing) when the console
    has not grown for *silence* seconds (default BOOT_SILENCE) before the
    command started; raises TimeoutExpired after *timeout* seconds."""
    silence = BOOT_SILENCE if silence is None else silence
    deadline = time.monotonic() + timeout
    size, quiet_since, started = -1, time.monotonic(), False
    while True:
        try:
            proc.wait(timeout=max(0.0, min(poll, deadline - time.monotonic())))
            return "exited"
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                raise
        if started:
            continue
        try:
            now_size = os.path.getsize(console_path)
        except OSError:
            now_size = 0
        if now_size != size:
            size, quiet_since = now_size, time.monotonic()
            with open(console_path, "rb") as f:
                started = _SCRIPT_STARTED.encode() in f.read()
        elif time.monotonic() - quiet_since >= silence:
            return "hung"


def _vng():
    # Prefer the vng next to the running interpreter (the repo's .venv).
    cand = os.path.join(os.path.dirname(sys.executable), "vng")
    if os.path.exists(cand):
        return cand
    found = shutil.which("vng")
    if not found:
        raise LabError("vng (virtme-ng) not found: pip install virtme-ng in the venv (scripts/install-deps.sh)")
    return found


def guest_python():
    """The Python the guest should use: this interpreter (the repo's venv),
    reachable in the guest because the host root is shared."""
    return sys.executable


class Region:
    """One ``memmap=<size>!<start>`` region of emulated pmem (bytes)."""

    def __init__(self, size, start):
        self.size = size
        self.start = start

    @classmethod
    def parse(cls, text):
        try:
            size, start = text.split("!")
            return cls(units.parse_int(size), units.parse_int(start))
        except ValueError:
            raise UsageError(f"bad memmap region {text!r}: expected SIZE!START, e.g. 1G!4G") from None

    @property
    def end(self):
        return self.start + self.size

    def __str__(self):
        return f"{units.format_size(self.size)}!{units.format_size(self.start)}"

    def __repr__(self):
        return f"Region({self})"


#: E820_TYPE_RAM and E820_TYPE_SOFT_RESERVED (arch/x86/include/asm/e820/types.h).
_E820_RAM = 1
_E820_SOFT_RESERVED = 0xEFFFFFFF

#: Default soft-reserved range: at 4 GiB, so it is 1 GiB aligned.
DEFAULT_SOFT_RESERVED_START = 4 * GiB


class SoftReserved(Region):
    """A RAM range turned into E820 "Soft Reserved" (what firmware does
    for CXL or other "specific purpose" memory): dax_hmem makes it a
    device-dax (dax0.0) with no NVDIMM.  ``memmap=nn%ss-oldtype+newtype``
    (parse_memmap_one(), arch/x86/kernel/e820.c) retypes RAM at START."""

    @classmethod
    def parse(cls, text):
        size, _, start = str(text).partition("@")
        try:
            reg = cls(units.parse_int(size), units.parse_int(start) if start else DEFAULT_SOFT_RESERVED_START)
        except ValueError:
            raise UsageError(f"bad soft-reserved range {text!r}: expected SIZE[@START], e.g. 2G or 2G@4G") from None
        if reg.size <= 0 or reg.size % GiB or reg.start % GiB:
            raise UsageError(
                f"soft-reserved range {text!r}: size and start must be multiples of 1G (a 1G-aligned device-dax)"
            )
        if reg.start < 4 * GiB:
            raise UsageError(f"soft-reserved range {text!r}: start it at 4G or above (the q35 PCI hole is 2G-4G)")
        return reg

    def kernel_arg(self):
        return f"memmap={self.size >> 20}M%{self.start:#x}-{_E820_RAM}+{_E820_SOFT_RESERVED:#x}"

    def __str__(self):
        return f"{units.format_size(self.size)}@{units.format_size(self.start)}"


def regions_for(memmap=DEFAULT_MEMMAP, nodax=None):
    """The list of :class:`Region`: *memmap* (strings or Regions) plus, if
    *nodax* is a size, a second region right after the last one for a
    non-DAX (block I/O) filesystem."""
    regs = [r if isinstance(r, Region) else Region.parse(r) for r in memmap]
    if nodax:
        size = units.parse_int(nodax)
        regs.append(Region(size, max(r.end for r in regs)))
    for r in regs:
        if r.size <= 0 or r.size % (2 << 20):
            raise UsageError(f"memmap region {r}: size must be a positive multiple of 2M")
        if r.start < 4 * GiB and r.end > _Q35_LOWMEM:
            raise UsageError(
                f"memmap region {r} overlaps the PCI hole (2G-4G) of the QEMU q35 machine: start it at 4G or above"
            )
    return regs


def memory_for(regions):
    """Guest RAM (bytes) so that every region is backed by RAM and about
    2 GiB stays usable: the RAM above 4 GiB must reach the highest region."""
    top = max((r.end for r in regions), default=4 * GiB)  # soft-reserved ranges too
    high = max(0, top - 4 * GiB)
    return max(4 * GiB, _Q35_LOWMEM + high + GiB)


class GuestResult:
    """What one guest run produced.

    :ivar returncode: exit status of the command in the guest
    :ivar stdout: its standard output (str; empty when not captured)
    :ivar stderr: its standard error (str)
    :ivar console: the kernel console log (str)
    :ivar elapsed: wall-clock seconds for boot + command + power-off
    :ivar boot_seconds: seconds until the command started (from the console)
    """

    def __init__(self, kernel, command, returncode, stdout, stderr, console, elapsed, boot_seconds):
        self.kernel = kernel
        self.command = command
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.console = console
        self.elapsed = elapsed
        self.boot_seconds = boot_seconds

    def console_tail(self, n=30):
        return "\n".join(self.console.splitlines()[-n:])

    def to_json(self):
        return {
            "kernel": self.kernel.release,
            "command": self.command,
            "returncode": self.returncode,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "elapsed": round(self.elapsed, 2),
            "boot_seconds": self.boot_seconds,
        }

    def check(self):
        """Raise :class:`LabError` if the command failed; return self."""
        if self.returncode != 0:
            raise LabError(
                f"{self.command!r} exited {self.returncode} on {self.kernel.release}: {self.stderr.strip()[-500:]}"
            )
        return self


def _boot_seconds(console):
    for line in console.splitlines():
        if _SCRIPT_STARTED in line and line.startswith("["):
            try:
                return float(line[1 : line.index("]")])
            except ValueError:
                return None
    return None


class _Follower(threading.Thread):
    """Copy what appears in a file (written by QEMU) to a stream, live."""

    def __init__(self, path, stream):
        super().__init__(daemon=True)
        self.path = path
        self.stream = stream
        self.stop = threading.Event()

    def run(self):
        pos = 0
        while True:
            stopping = self.stop.is_set()
            try:
                with open(self.path, "rb") as f:
                    f.seek(pos)
                    data = f.read()
            except FileNotFoundError:
                data = b""
            if data:
                pos += len(data)
                out = getattr(self.stream, "buffer", None)
                if out is not None:
                    out.write(data)
                else:
                    self.stream.write(data.decode("utf-8", "replace"))
                self.stream.flush()
            if stopping:
                return
            self.stop.wait(0.2)


#: vng passes the script in the kernel command line (base64), which x86
#: bounds at 2048 bytes (COMMAND_LINE_SIZE); a longer one overflowed a
#: fortified strlen() in 7.3's early boot and the guest panicked.  Longer
#: scripts go in a host file the guest reads (it sees the host root read-only).
SCRIPT_INLINE_MAX = 512


def _exec_line(script, work):
    """What vng's --exec gets: *script* itself when short, else ``sh FILE``
    with *script* written to *work* (removed with it after the boot)."""
    if len(script.encode()) <= SCRIPT_INLINE_MAX:
        return script
    path = os.path.join(work, "script.sh")
    with open(path, "w") as f:
        f.write(script)
    return f"exec sh {shlex.quote(path)}"


_PRECOMPILED = threading.Event()


def _precompile_tree() -> None:
    """Write the bytecode of the checkout's pmemtrace, tests and benchmarks
    on the host, once per lab process.  Guests run with
    PYTHONDONTWRITEBYTECODE (several guests share the tree), so without
    it every Python process in a guest compiles every module of the tree
    it imports: 1.4 s of a 7 s ``pmemtrace run`` under TCG, and a live tier
    starts hundreds of them.  Stale files are rewritten (compileall checks
    each source's mtime); a tree without its sources (an installed
    package) or a read-only one just stays as it is."""
    if _PRECOMPILED.is_set():
        return
    _PRECOMPILED.set()
    import compileall

    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for sub in ("pmemtrace", "tests", "benchmarks", "bpf"):
        d = os.path.join(here, sub)
        if os.path.isdir(d) and os.access(d, os.W_OK):
            compileall.compile_dir(d, quiet=2, workers=1)


def build_script(command, env=None, cwd=None, prepare=None):
    """The shell script run in the guest: stderr to our port, PATH with the
    venv first, lab environment, optional preparation, then *command*."""
    venv_bin = os.path.dirname(guest_python())
    lines = [
        "exec 2>/dev/virtio-ports/pmemtrace.stderr",
        f"export PATH={shlex.quote(venv_bin)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "export PYTHONDONTWRITEBYTECODE=1",
    ]
    for k, v in sorted((env or {}).items()):
        lines.append(f"export {k}={shlex.quote(str(v))}")
    if cwd:
        lines.append(f"cd {shlex.quote(cwd)} || exit 125")
    if prepare:
        lines.append(
            f"{shlex.quote(guest_python())} -m pmemtrace.lab.guest prepare "
            + " ".join(shlex.quote(a) for a in prepare)
            + " >&2 || exit 124"
        )
    lines.append(command)
    return "\n".join(lines) + "\n"


def qemu_opts(stderr_path: str, kvm: bool = False, icount=None) -> str:
    """QEMU options beyond vng's: the guest's stderr port, and without KVM
    round-robin TCG (see the note at the top), counting instructions as
    time with *icount* (:func:`run`)."""
    opts = (
        f"-chardev file,id=pmtstderr,path={stderr_path} -device virtserialport,name=pmemtrace.stderr,chardev=pmtstderr"
    )
    if not kvm:
        opts += " -accel tcg,thread=single"
        if icount is not None:
            opts += f" -icount shift={int(icount)},sleep=on"
    return opts


def run(
    kernel,
    command,
    *,
    memmap=DEFAULT_MEMMAP,
    nodax=None,
    soft_reserved=None,
    memory=None,
    cpus=2,
    prepare=None,
    env=None,
    cwd=None,
    rwdirs=(),
    append=(),
    timeout=DEFAULT_TIMEOUT,
    capture=True,
    stream=False,
    kvm=False,
    output=None,
    icount=None,
):
    """Boot *kernel* with emulated pmem and run *command* (a shell string or
    an argv list) as root in the guest; return a :class:`GuestResult`.

    :param kernel: a :class:`~pmemtrace.lab.kernels.Kernel` or a name
        (``"6.12"``) resolved with :func:`pmemtrace.lab.kernels.get`
    :param memmap: ``SIZE!START`` strings, one per pmem region
    :param nodax: size of an extra region (``/dev/pmem1``) for a non-DAX fs
    :param soft_reserved: ``SIZE[@START]`` (default start 4G) of RAM booted as
        E820 Soft Reserved, for a dax_hmem device-dax; pass ``memmap=()``
        for a boot with no NVDIMM at all
    :param memory: guest RAM in bytes (default: :func:`memory_for`)
    :param prepare: argument list for ``python -m pmemtrace.lab.guest prepare``
        run before *command* (exit 124 if it fails)
    :param env: extra environment variables for the command
    :param cwd: guest working directory (default: the current one)
    :param rwdirs: host directories the guest may write to
    :param timeout: seconds for boot + command; then the VM is killed and
        :class:`LabError` raised with the console tail
    :param capture: keep stdout/stderr in the result
    :param stream: also copy the guest's stdout/stderr to ours as they come
    :param output: a text file to stream to instead of our stdout/stderr
        (``lab test --jobs``: each kernel's output kept apart, shown whole)
    :param kvm: use KVM (it hangs Debian kernels on this machine kind)
    :param icount: QEMU's ``-icount shift=N,sleep=on`` under TCG: the guest's
        clock advances 2^N ns per instruction executed (an idle guest skips
        ahead to its next timer), so a benchmark's guest-side times count
        the instructions of every vCPU (round-robin TCG runs one at a time),
        whatever else the host runs; not with *kvm*
    :raises LabError: the boot failed or hung, or vng is missing
    """
    if _STOPPING.is_set():
        raise LabError("the lab is stopping (signal): no new boot")
    if not isinstance(kernel, _kernels.Kernel):
        kernel = _kernels.get(kernel)
    if not isinstance(command, str):
        command = " ".join(shlex.quote(a) for a in command)
    regions = regions_for(memmap, nodax) if memmap or nodax else []
    hmem = (
        soft_reserved
        if isinstance(soft_reserved, SoftReserved) or not soft_reserved
        else SoftReserved.parse(soft_reserved)
    )
    if hmem and any(r.start < hmem.end and hmem.start < r.end for r in regions):
        raise UsageError(f"soft-reserved range {hmem} overlaps a memmap pmem region")
    memory = memory or memory_for(regions + ([hmem] if hmem else []))
    cwd = cwd or os.getcwd()
    genv = {
        "PMEMTRACE_LAB_GUEST": "1",
        "PMEMTRACE_LAB_KERNEL": kernel.release,
        "PMEMTRACE_LAB_SERIES": kernel.series,
        "PMEMTRACE_LAB_MEMMAP": ",".join(str(r) for r in regions),
        "PMEMTRACE_LAB_NODAX": "1" if nodax else "0",
        "PMEMTRACE_LAB_SOFT_RESERVED": str(hmem) if hmem else "",
    }
    for k in ("PMEMTRACE_RUN_LIVE_TESTS",):
        if k in os.environ:
            genv[k] = os.environ[k]
    genv.update(env or {})

    _precompile_tree()
    work = tempfile.mkdtemp(prefix="pmemtrace-lab-")
    console_path = os.path.join(work, "console.log")
    stderr_path = os.path.join(work, "stderr")
    script = build_script(command, genv, cwd if os.path.isdir(cwd) else None, prepare)
    appends = [" ".join(f"memmap={r}" for r in regions)] if regions else []
    appends += list(SERIES_APPEND.get(kernel.series, ())) + list(append)
    if hmem:
        # memory blocks kmem adds (the default driver since 6.3) stay
        # offline, so moving the device to device_dax never fails on pages
        # the kernel allocated there
        appends += [hmem.kernel_arg(), "memhp_default_state=offline"]
    argv = [
        _vng(),
        "--verbose",
        "--run",
        kernel.vmlinuz,
        "--memory",
        str(memory // (1 << 20)) + "M",
        "--cpus",
        str(cpus),
        "--append",
        " ".join(appends),
        "--qemu-opts=" + qemu_opts(stderr_path, kvm, icount),
        "--exec",
        _exec_line(script, work),
    ]
    if not kvm:
        argv.insert(1, "--disable-kvm")
    for d in rwdirs:
        argv += ["--rwdir", d]
    venv_bin = os.path.dirname(_vng())
    penv = dict(os.environ, PATH=venv_bin + os.pathsep + os.environ.get("PATH", ""))

    out_chunks = []
    start = time.monotonic()
    console = open(console_path, "wb")
    follower = _Follower(stderr_path, output or sys.stderr) if stream else None
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=console,
            cwd=cwd if os.path.isdir(cwd) else "/",
            env=penv,
            start_new_session=True,
        )
    except OSError as exc:
        console.close()
        shutil.rmtree(work, ignore_errors=True)
        raise LabError(f"cannot start vng: {exc}") from exc

    sink = output or sys.stdout

    def _read_stdout():
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            if capture:
                out_chunks.append(chunk)
            if stream or not capture:
                sink.buffer.write(chunk)
                sink.flush()

    _RUNNING.add(proc)
    if _STOPPING.is_set():  # kill_running() ran while this boot was starting
        _kill(proc)
    reader = threading.Thread(target=_read_stdout, daemon=True)
    reader.start()
    if follower:
        follower.start()
    timed_out = False
    # a SIGTERM to us must not leave QEMU running (it is in its own session)
    old_term = None
    if threading.current_thread() is threading.main_thread():

        def _term(signum, frame):
            raise SystemExit(128 + signum)

        old_term = signal.signal(signal.SIGTERM, _term)
    hung = False
    try:
        hung = _wait(proc, console_path, timeout) == "hung"
        timed_out = hung
    except subprocess.TimeoutExpired:
        timed_out = True
    except BaseException:
        _kill(proc)
        raise
    finally:
        _RUNNING.discard(proc)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        if timed_out:
            _kill(proc)
        reader.join(5)
        if follower:
            follower.stop.set()
            follower.join(5)
        console.close()
    elapsed = time.monotonic() - start
    try:
        with open(console_path, "rb") as f:
            console_text = f.read().decode("utf-8", "replace")
        try:
            with open(stderr_path, "rb") as f:
                err_text = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            err_text = ""
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = GuestResult(
        kernel,
        command,
        proc.returncode,
        b"".join(out_chunks).decode("utf-8", "replace"),
        err_text if capture else "",
        console_text,
        elapsed,
        _boot_seconds(console_text),
    )
    if hung:
        raise BootError(
            f"kernel {kernel.release} hung while booting: its console printed nothing for {BOOT_SILENCE} s "
            f"before the command started; console tail:\n{result.console_tail()}",
            result=result,
            hung=True,
        )
    if timed_out:
        started = (
            "the command was running" if result.boot_seconds is not None else "the guest never started the command"
        )
        raise BootError(
            f"kernel {kernel.release} timed out after {timeout} s ({started}); console tail:\n{result.console_tail()}",
            result=result,
        )
    if result.boot_seconds is None:
        raise BootError(
            f"kernel {kernel.release} failed to boot (vng exit {proc.returncode}); "
            f"console tail:\n{result.console_tail()}",
            result=result,
        )
    return result


#: QEMU process groups of the boots in progress (several with lab test --jobs):
#: only the main thread gets signals, so it kills them all (kill_running).
_RUNNING: set = set()
#: Set by kill_running(): no new boot starts (a lab test thread that was
#: between two boots when the signal came must not start the next one).
_STOPPING = threading.Event()


def kill_running():
    """Kill every guest :func:`run` has started and not yet reaped, and
    refuse new boots from now on."""
    _STOPPING.set()
    for proc in list(_RUNNING):
        _kill(proc)


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def kvm_works(kernel, timeout=45):
    """A short KVM probe: boot *kernel* with KVM running ``true``.  Debian
    kernels hang right after the BIOS under this machine kind's KVM."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    try:
        return run(kernel, "true", kvm=True, timeout=timeout).returncode == 0
    except LabError:
        return False
