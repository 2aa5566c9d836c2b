"""The live test tier: ``pytest tests/live`` inside one lab guest per kernel.

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

from ..errors import LabError

log = logging.getLogger(__name__)

#: How many times a kernel's tier resumes after the guest died (vng 255).
MAX_RESUMES = 2

#: Tests that need the soft-reserved layout (a dax_hmem device-dax, no
#: NVDIMM): a second, short boot per kernel runs them; the pmem boot leaves
#: them out.
SOFT_RESERVED_TESTS = "tests/live/test_softreserved_live.py"
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
        for attempt in range(MAX_RESUMES + 1):
            argv = list(pytest_argv) + [a for n in deselect for a in ("--deselect", n)]
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
                **({"memmap": (), "soft_reserved": soft_reserved} if soft_reserved else {}),
            )
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
) -> list[KernelResult]:
    """The live tier on each kernel of *names* (one boot each, in order)."""
    from . import kernels, vm

    root = repo_root()
    pytest = [
        vm.guest_python(),
        "-m",
        "pytest",
        "tests/live",
        "-p",
        "no:cacheprovider",
        "-q",
        "-r",
        "s",
        "--strict-markers",
    ] + list(pytest_extra)
    pmem_boot = pytest[:4] + ["--ignore", SOFT_RESERVED_TESTS] + pytest[4:]
    hmem_boot = pytest[:3] + [SOFT_RESERVED_TESTS] + pytest[4:]
    env = {"PMEMTRACE_RUN_LIVE_TESTS": "1"} if require else {}
    results = []
    for name in names:
        t0 = time.monotonic()
        k = None
        try:
            k = kernels.get(name)
            status(f"=== {k.release}: booting and running tests/live")
            rc, note = run_kernel(k, pmem_boot, root, env, nodax=nodax, timeout=timeout, cpus=cpus, status=status)
            status(f"=== {k.release}: booting with a soft-reserved range for {SOFT_RESERVED_TESTS}")
            rc2, note2 = run_kernel(
                k, hmem_boot, root, env, timeout=timeout, cpus=cpus, status=status, soft_reserved=SOFT_RESERVED
            )
            # 5 is pytest's "no tests collected" (a -k that selects only one boot's tests)
            rc = rc2 if rc in (0, 5) and rc2 != 5 else rc
            note = note or note2
        except LabError as exc:
            rc, note = -1, str(exc)
            status(f"{name}: {exc}")
        r = KernelResult(k.release if k is not None else name, rc, time.monotonic() - t0, note)
        results.append(r)
        status(
            f"=== {r.release}: {'passed' if rc == 0 else f'FAILED (exit {rc})'} in {r.seconds:.1f} s"
            + (f" ({note})" if note else "")
        )
    return results
