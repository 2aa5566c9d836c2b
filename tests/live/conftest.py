"""The live tier's one gate.

Every test under tests/live depends on ``lab_gate`` (added to each item at
collection): it probes once per session -- inside a pmemtrace lab guest?
root? nvdimm modules loadable? pmem in /proc/iomem? -- and either lets the
test run or skips it with that full-sentence reason.  With
``PMEMTRACE_RUN_LIVE_TESTS=1`` (``pmemtrace lab test --require``, CI) the
skip is a failure instead.

Fixtures for tests: ``lab_gate`` (:class:`labkit.LabGate`: ``release``,
``series``, ``nodax``), ``guest`` (:class:`labkit.Guest`: ``fsdax()``,
``devdax()``, ``namespace()``, ``nodax()``, ``namespace_sysfs()``) and
``tracefs`` (:class:`labkit.Tracefs`: ``with tracefs.capture() as cap``).
"""

import os

import pytest

from .labkit import Guest, LabGate, Tracefs

_GATE = None


def _gate():
    global _GATE
    if _GATE is None:
        _GATE = LabGate()
    return _GATE


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        if str(item.fspath).startswith(here + os.sep):
            item.add_marker(pytest.mark.live)
            item.fixturenames.insert(0, "lab_gate")


def pytest_report_header(config):
    g = _gate()
    state = "ready" if g.reason is None else f"not available: {g.reason}"
    return f"pmemtrace lab: kernel {g.release} (series {g.series or '?'}), live tier {state}"


@pytest.fixture(scope="session")
def lab_gate():
    g = _gate()
    g.check()
    return g


@pytest.fixture(scope="session")
def guest(lab_gate):
    g = Guest(lab_gate)
    yield g
    g.cleanup()


@pytest.fixture(scope="session")
def tracefs(lab_gate):
    return Tracefs()


# -- progress for `pmemtrace lab test` --------------------------------------
# With PMEMTRACE_LAB_PROGRESS=<file> (a host directory the guest may write),
# each test's start and outcome is appended and synced at once, so that when
# the guest dies mid-tier (vng exit 255) the host knows which test was
# running and which still have to run.

_PROGRESS = os.environ.get("PMEMTRACE_LAB_PROGRESS")


def _progress(line):
    with open(_PROGRESS, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def pytest_runtest_logstart(nodeid, location):
    if _PROGRESS:
        _progress(f"start {nodeid}")


def pytest_runtest_logreport(report):
    if not _PROGRESS:
        return
    if report.when == "call" or report.outcome != "passed":
        # one line per test: the call's outcome, or a setup/teardown error/skip
        _progress(f"{report.outcome} {report.when} {report.nodeid}")
