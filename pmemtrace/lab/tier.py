"""The live test tier: ``pytest tests/live`` inside one lab guest per kernel.

Which live test files run on which kernel is declared here
(:data:`LIVE_FILES`, :func:`plan`; ``pmemtrace lab test --plan`` prints it):
the checks that tie a model profile to its kernel run on every kernel, the
probe-backend tests once per probe family (docs/lab.md, "The CI plan").

A guest can die mid-tier (vng exit 255: the guest kernel crashed or QEMU
died, so no exit status came back).  tests/live/conftest.py appends each
test's start and outcome to a progress file on the host
(``PMEMTRACE_LAB_PROGRESS``), so the runner knows which test was running
and resumes with those that have not finished.
"""

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Optional

from ..errors import LabError, UsageError

log = logging.getLogger(__name__)

#: Runs on every kernel of the list.
EVERY_KERNEL = "every"
#: Runs on one kernel per probe family: the newest of the list whose profile
#: has the same probe-relevant behaviour (:func:`probe_family`).
PER_FAMILY = "family"
#: Runs on one kernel per model profile (the newest of the list with it).
PER_PROFILE = "profile"
#: Runs on the newest kernel of the list only.
NEWEST_KERNEL = "newest"

#: Where each live test file runs.  A new file under tests/live must be added
#: here (tests/test_lab_plan.py fails until it is): EVERY_KERNEL when it
#: compares the kernel with the model or checks something a kernel release can
#: change (layouts, fault rules, fs_dax events, lab preparation), PER_FAMILY
#: when what it exercises is the probe backends (bcc, tracefs, watch,
#: diagnose), whose kernel-side inputs are the probe family's; PER_PROFILE
#: when it compares the kernel with the model broadly and a second kernel of
#: the same profile adds little for its cost (test_check_live.py: every
#: embedded scenario on xfs and ext4, a third of a whole tier); NEWEST_KERNEL
#: when what it adds is pmemtrace's own machinery and its kernel-dependent
#: part already runs on every kernel elsewhere (test_scenarios.py: the fsdax
#: scenarios are compared with the model on every kernel by
#: test_check_live.py, device-dax faults by test_model_vs_kernel.py).
LIVE_FILES = {
    "test_lab_guest.py": EVERY_KERNEL,
    "test_model_vs_kernel.py": EVERY_KERNEL,
    "test_check_live.py": PER_PROFILE,
    "test_probe_map.py": EVERY_KERNEL,
    "test_bpf_compile.py": PER_FAMILY,
    "test_diagnose_live.py": PER_FAMILY,
    "test_scenarios.py": NEWEST_KERNEL,
    "test_tracefs_host.py": PER_FAMILY,
    "test_watch_bcc.py": PER_FAMILY,
    "test_watch_kill.py": PER_FAMILY,
    # trace-cmd's .dat carries the kernel's own fs_dax event formats
    "test_replay_dat_live.py": PER_FAMILY,
    # the exporter's counts come from the watch backends (tracefs here)
    "test_metrics_live.py": PER_FAMILY,
    # generated cases and the regression corpus against this kernel (issue 16)
    "test_differential.py": EVERY_KERNEL,
    # last: its own boot (SOFT_RESERVED_PATHS) follows the pmem boot
    "test_softreserved_live.py": EVERY_KERNEL,
}

#: How many times a kernel's tier resumes after the guest died (vng 255).
MAX_RESUMES = 2
#: How many times a boot that hung (silent console, vm.BOOT_SILENCE) is retried.
MAX_HUNG_BOOTS = 1

#: Test files that need the soft-reserved layout (a dax_hmem device-dax, no
#: NVDIMM): a second, short boot of the kernel runs them, with a
#: soft-reserved range of SOFT_RESERVED at 4G instead of the memmap pmem.
SOFT_RESERVED_PATHS = ("tests/live/test_softreserved_live.py",)
SOFT_RESERVED = "1G"


def repo_root() -> str:
    """The source tree holding tests/live (the package's parent directory)."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not os.path.isdir(os.path.join(here, "tests", "live")):
        raise LabError(
            f"no tests/live next to the pmemtrace package ({here}): run the live "
            "tier from a source checkout installed with pip install -e"
        )
    return here


def live_test_files(root: str) -> list[str]:
    """The test files under *root*/tests/live (names only, sorted)."""
    d = os.path.join(root, "tests", "live")
    return sorted(n for n in os.listdir(d) if n.startswith("test_") and n.endswith(".py"))


def check_assignments(root: str) -> None:
    """Every live test file is in :data:`LIVE_FILES` and every entry exists."""
    files = set(live_test_files(root))
    unassigned = sorted(files - set(LIVE_FILES))
    stale = sorted(set(LIVE_FILES) - files)
    if unassigned or stale:
        raise LabError(
            "pmemtrace/lab/tier.py LIVE_FILES does not match tests/live: "
            + "; ".join(
                x
                for x in (
                    f"not assigned to kernels: {', '.join(unassigned)}" if unassigned else "",
                    f"listed but missing: {', '.join(stale)}" if stale else "",
                )
                if x
            )
            + " (add each new file with EVERY_KERNEL or PER_FAMILY)"
        )


def profile_release(name: str) -> str:
    """A release string for the model's profile selection of a lab kernel
    name: the cached release when there is one (``7`` -> ``7.2.13+deb14-amd64``),
    else the name itself (``7`` -> ``7.0``)."""
    from . import kernels

    try:
        k = kernels.find(name)
    except LabError:
        k = None
    if k is not None:
        return str(k.release)
    return name if "." in name else f"{name}.0"


def probe_family(release: str) -> str:
    """What the probe backends see of a kernel, from its model profile: the
    PMD/PUD insert functions, whether GUP goes through get_dev_pagemap(), the
    fs_dax tracepoints.  Kernels with the same family get the same probe map
    (tests/test_probe_map.py checks that on the recorded maps)."""
    from ..model.profiles import select_profile

    p = select_profile(release)
    return "{}/{}, {}, {} fs_dax events".format(
        p.pmd_insert_function,
        p.pud_insert_function,
        "get_dev_pagemap" if p.gup_uses_get_dev_pagemap else "no get_dev_pagemap",
        len(p.tracepoints),
    )


@dataclass
class KernelPlan:
    """What :func:`run_tier` runs on one kernel of the list."""

    name: str
    family: str
    representative: bool  # the kernel of its family that runs PER_FAMILY files
    files: list[str]  # test file names under tests/live, in LIVE_FILES order

    def paths(self) -> list[str]:
        return [f"tests/live/{f}" for f in self.files]

    def to_json(self) -> dict:
        return {
            "kernel": self.name,
            "family": self.family,
            "family_representative": self.representative,
            "files": self.files,
        }


def plan(names: Sequence[str], release_of: Optional[Callable[[str], str]] = None) -> list[KernelPlan]:
    """The per-kernel plan for the kernel list *names*: EVERY_KERNEL files on
    each; PER_FAMILY files on the newest kernel of each probe family;
    PER_PROFILE files on the newest kernel of each model profile;
    NEWEST_KERNEL files on the newest kernel of the list.  *release_of* maps
    a name to a release for the profile."""
    from ..model.profiles import parse_release, select_profile

    releases = {n: (release_of or profile_release)(n) for n in names}
    families = {n: probe_family(releases[n]) for n in names}
    profiles = {n: select_profile(releases[n]).name for n in names}

    def newest_by(group: dict[str, str]) -> dict[str, str]:
        best: dict[str, str] = {}
        for n in names:
            g = group[n]
            if g not in best or parse_release(releases[n]) > parse_release(releases[best[g]]):
                best[g] = n
        return best

    newest, newest_profile = newest_by(families), newest_by(profiles)
    newest_of_all = max(names, key=lambda n: parse_release(releases[n]))
    out = []
    for n in names:
        rep = newest[families[n]] == n
        runs = {
            EVERY_KERNEL: True,
            PER_FAMILY: rep,
            PER_PROFILE: newest_profile[profiles[n]] == n,
            NEWEST_KERNEL: n == newest_of_all,
        }
        files = [f for f, scope in LIVE_FILES.items() if runs[scope]]
        out.append(KernelPlan(n, families[n], rep, files))
    return out


_SCOPE_ORDER = {
    EVERY_KERNEL: "every-kernel files",
    PER_PROFILE: "its profile's files",
    PER_FAMILY: "its probe family's files",
    NEWEST_KERNEL: "the newest kernel's files",
}


def render_plan(plans: Sequence[KernelPlan]) -> str:
    """The plan as text, one block per kernel."""
    lines = []
    for p in plans:
        scopes = sorted({LIVE_FILES[f] for f in p.files}, key=list(_SCOPE_ORDER).index)
        lines.append(f"{p.name}: {', '.join(_SCOPE_ORDER[s] for s in scopes)}; probe family {p.family}")
        lines += [f"    tests/live/{f}" for f in p.files]
    return "\n".join(lines)


def read_progress(path: str) -> tuple[list[str], set[str], Optional[str]]:
    """Parse the live tier's progress file (tests/live/conftest.py):
    ``(finished, failed, running)``: node ids with an outcome, those that
    failed, and the one started without an outcome (the guest died in it)."""
    finished: list[str] = []
    failed: set[str] = set()
    running: Optional[str] = None
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return finished, failed, running
    for line in lines:
        parts = line.split(" ", 2)
        if parts[0] == "start" and len(parts) == 2:
            running = parts[1]
        elif len(parts) == 3:
            outcome, _when, nodeid = parts
            if nodeid not in finished:
                finished.append(nodeid)
            if outcome == "failed":
                failed.add(nodeid)
            if nodeid == running:
                running = None
    return finished, failed, running


@dataclass
class KernelResult:
    release: str
    returncode: int  # pytest's, 255 when the guest died, -1 when it never booted
    seconds: float
    note: Optional[str] = None

    def to_json(self) -> dict:
        return {
            "release": self.release,
            "returncode": self.returncode,
            "seconds": round(self.seconds, 1),
            "error": self.note,
        }


def run_kernel(
    kernel,
    pytest_argv: Sequence[str],
    root: str,
    env: dict,
    nodax: Optional[str] = None,
    timeout: Optional[int] = None,
    cpus: int = 2,
    status: Callable[[str], None] = log.info,
    soft_reserved: Optional[str] = None,
    output=None,
) -> tuple[int, Optional[str]]:
    """Run the tier in one boot of *kernel*; when the guest dies, say in
    which test, show the console tail, and resume with the tests that have
    not finished (at most MAX_RESUMES times).  Returns (exit status, note)."""
    from . import vm

    work = tempfile.mkdtemp(prefix="pmemtrace-lab-progress-")
    progress = os.path.join(work, "progress")
    kenv = dict(env, PMEMTRACE_LAB_PROGRESS=progress)
    note = None
    try:
        deselect: list[str] = []
        failed_before = False
        boots_left = MAX_HUNG_BOOTS
        for attempt in range(MAX_RESUMES + 1):
            argv = list(pytest_argv) + [a for n in deselect for a in ("--deselect", n)]
            while True:
                try:
                    res = vm.run(
                        kernel,
                        argv,
                        cwd=root,
                        env=kenv,
                        stream=True,
                        capture=False,
                        rwdirs=[work],
                        nodax=nodax,
                        timeout=timeout or 2400,
                        cpus=cpus,
                        output=output,
                        **({"memmap": (), "soft_reserved": soft_reserved} if soft_reserved else {}),
                    )
                    break
                except vm.BootError as exc:
                    if not exc.hung or boots_left == 0:
                        raise
                    boots_left -= 1
                    status(f"{kernel.release}: {str(exc).splitlines()[0]}; booting again")
            rc = res.returncode
            if rc != 255:
                if failed_before and rc in (0, 5):
                    rc = 1
                return rc, note
            finished, failed, running = read_progress(progress)
            failed_before = failed_before or bool(failed)
            died = f"while running {running}" if running else "outside any test"
            note = f"guest died {died}"
            status(
                f"{kernel.release}: the guest died {died} (vng exit 255: no exit status came "
                f"back); console tail:\n{res.console_tail(60)}"
            )
            if attempt < MAX_RESUMES:
                status(f"{kernel.release}: resuming with the tests that have not finished ({len(finished)} finished)")
            deselect = finished
        return 255, note
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_tier(
    names: Sequence[str],
    pytest_extra: Sequence[str] = (),
    require: bool = False,
    nodax: Optional[str] = None,
    timeout: Optional[int] = None,
    cpus: int = 2,
    status: Callable[[str], None] = log.info,
    whole: bool = False,
    only: Optional[Sequence[str]] = None,
    jobs: int = 1,
) -> list[KernelResult]:
    """The live tier on each kernel of *names*: the files :func:`plan` gives
    each kernel, or all of tests/live with *whole*.  With *only*, boot just
    those kernels of *names*, each with its part of the plan for the whole
    list (CI's 5.10 share, alone).  With *jobs* > 1, that many kernels boot
    at once (each guest runs its vCPUs in one host thread, so on an idle
    2-core machine two guests take about the time of one); each kernel's
    output is then kept in a file and printed whole when it ends.  Results
    come in the order of *names*."""
    from . import kernels, vm

    root = repo_root()
    if whole:
        every = [f"tests/live/{f}" for f in live_test_files(root)]
        paths = dict.fromkeys(names, every)
    else:
        check_assignments(root)
        paths = {p.name: p.paths() for p in plan(names)}
    env = {"PMEMTRACE_RUN_LIVE_TESTS": "1"} if require else {}
    if only is not None:
        unknown = [n for n in only if n not in names]
        if unknown:
            raise UsageError(f"--only {','.join(unknown)}: not in the kernel list {','.join(names)}")
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: must be at least 1")
    todo = [n for n in names if only is None or n in only]

    def pytest_for(files: list[str]) -> list[str]:
        return (
            [vm.guest_python(), "-m", "pytest"]
            + files
            + ["-p", "no:cacheprovider", "-q", "-r", "s", "--strict-markers", "--durations=0"]
            + list(pytest_extra)
        )

    def one_kernel(name: str, output=None) -> KernelResult:
        t0 = time.monotonic()
        k = None
        try:
            k = kernels.get(name)
            # the soft-reserved files need their own boot (a dax_hmem device,
            # no NVDIMM): the pmem tests rely on region0/namespace0.0/dax0.0
            pmem_paths = [x for x in paths[name] if x not in SOFT_RESERVED_PATHS]
            hmem_paths = [x for x in paths[name] if x in SOFT_RESERVED_PATHS]
            rc, note = 5, None
            if pmem_paths:
                status(f"=== {k.release}: booting and running {' '.join(pmem_paths)}")
                rc, note = run_kernel(
                    k,
                    pytest_for(pmem_paths),
                    root,
                    env,
                    nodax=nodax,
                    timeout=timeout,
                    cpus=cpus,
                    status=status,
                    output=output,
                )
            if hmem_paths:
                status(
                    f"=== {k.release}: booting with a soft-reserved range ({SOFT_RESERVED}) for {' '.join(hmem_paths)}"
                )
                rc2, note2 = run_kernel(
                    k,
                    pytest_for(hmem_paths),
                    root,
                    env,
                    timeout=timeout,
                    cpus=cpus,
                    status=status,
                    soft_reserved=SOFT_RESERVED,
                    output=output,
                )
                # 5 is pytest's "no tests collected" (a -k that selects only one boot's tests)
                rc = rc2 if rc in (0, 5) and rc2 != 5 else rc
                note = note or note2
        except LabError as exc:
            rc, note = -1, str(exc)
            status(f"{name}: {exc}")
        r = KernelResult(k.release if k is not None else name, rc, time.monotonic() - t0, note)
        status(
            f"=== {r.release}: {'passed' if rc == 0 else f'FAILED (exit {rc})'} in {r.seconds:.1f} s"
            + (f" ({note})" if note else "")
        )
        return r

    if jobs == 1 or len(todo) < 2:
        return [one_kernel(n) for n in todo]
    return _run_parallel(todo, one_kernel, jobs, {n: len(paths[n]) for n in todo})


def _run_parallel(todo, one_kernel, jobs, weight) -> list[KernelResult]:
    """Run *one_kernel* on *jobs* kernels at a time, the heaviest plans first
    (so the longest kernel does not start last); each kernel's output goes to
    a file of its own, printed whole when the kernel ends."""
    import concurrent.futures
    import signal
    import sys

    from . import vm

    logs: list[str] = []

    def with_log(name: str) -> tuple[KernelResult, str]:
        fd, path = tempfile.mkstemp(prefix=f"pmemtrace-lab-{name}-", suffix=".log")
        logs.append(path)
        with open(fd, "w", encoding="utf-8", errors="replace") as out:
            return one_kernel(name, out), path

    def _term(signum, frame):
        raise SystemExit(128 + signum)

    # vm.run sets this only in the main thread: here the guests run in others
    old_term = signal.signal(signal.SIGTERM, _term)

    order = sorted(todo, key=lambda n: -weight[n])
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs)
    results: dict[str, KernelResult] = {}
    try:
        futures = {pool.submit(with_log, n): n for n in order}
        for fut in concurrent.futures.as_completed(futures):
            r, path = fut.result()
            results[futures[fut]] = r
            try:
                with open(path, "rb") as f:
                    sys.stdout.flush()
                    sys.stdout.buffer.write(f"\n===== output of {r.release} =====\n".encode())
                    shutil.copyfileobj(f, sys.stdout.buffer)
                    sys.stdout.flush()
            finally:
                os.unlink(path)
    except BaseException:
        # only this thread gets signals: stop every guest, then the threads end
        pool.shutdown(wait=False, cancel_futures=True)
        vm.kill_running()
        for path in logs:  # the logs not yet printed
            if os.path.exists(path):
                os.unlink(path)
        raise
    finally:
        signal.signal(signal.SIGTERM, old_term)
    pool.shutdown()
    return [results[n] for n in todo]
