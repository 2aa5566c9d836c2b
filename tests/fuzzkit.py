"""Shared machinery of the property-based fuzz tests (tests/test_fuzz_*.py).

Every generated input is run through the real command line, in-process
(``pmemtrace.cli.main`` with stdout/stderr captured) or, for a few, as a
subprocess under a memory limit.  The properties checked for every input:

- the exit status is one of the documented ones (docs/exit-status.md);
- no traceback: any exception other than argparse's SystemExit escapes
  ``main`` and fails the test with the input that caused it;
- on failure, stderr is at most 3 lines, and not empty for an error (2-4);
- each run ends within the hypothesis deadline (time budget), and the
  subprocess runs within a memory limit (RLIMIT_AS).

Budgets: a fixed-seed (derandomized) run of FUZZ_EXAMPLES inputs per test in
the unit tier; ``PMEMTRACE_FUZZ_EXAMPLES=10000`` for the long run recorded in
docs/hardening.md.
"""

import contextlib
import io
import os
import resource
import subprocess
import sys
from datetime import timedelta

from hypothesis import HealthCheck, settings

from pmemtrace.cli import main
from pmemtrace.errors import EXIT_STATUSES

#: inputs per fuzz test; the CI default keeps the whole fuzz set in minutes
FUZZ_EXAMPLES = int(os.environ.get("PMEMTRACE_FUZZ_EXAMPLES", "0") or 0)
#: wall-clock budget for one in-process command
DEADLINE_MS = int(os.environ.get("PMEMTRACE_FUZZ_DEADLINE_MS", "4000"))
#: address-space limit for the subprocess runs
MEMORY_LIMIT = 1 << 30

settings.register_profile(
    "pmemtrace-fuzz",
    derandomize=True,  # the same inputs on every run: a CI failure reproduces
    deadline=timedelta(milliseconds=DEADLINE_MS),
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
    ],
    database=None,
    print_blob=True,
    report_multiple_bugs=False,
)


def fuzz_settings(ci_examples):
    """Settings for one fuzz test: *ci_examples* inputs in the unit tier, or
    PMEMTRACE_FUZZ_EXAMPLES in the long run."""
    return settings(settings.get_profile("pmemtrace-fuzz"), max_examples=FUZZ_EXAMPLES or ci_examples)


class Outcome:
    def __init__(self, argv, status, out, err):
        self.argv, self.status, self.out, self.err = argv, status, out, err

    def __repr__(self):
        return f"Outcome(argv={self.argv!r}, status={self.status}, err={self.err!r})"


def run_cli(argv, stdin=""):
    """Run ``pmemtrace ARGV`` in-process; returns an Outcome.  Exceptions
    other than SystemExit propagate: they would be tracebacks for a user."""
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(list(argv))
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        sys.stdin = old_stdin
    return Outcome(argv, status, out.getvalue(), err.getvalue())


def check(o, allowed=None):
    """The properties every outcome must have (see the module docstring)."""
    allowed = set(EXIT_STATUSES) - {130} if allowed is None else set(allowed)
    assert o.status in allowed, o
    assert "Traceback" not in o.err, o
    if o.status != 0:
        lines = o.err.strip().splitlines()
        # a finding (1) may be reported on stdout only (--json); errors say why on stderr
        assert (0 if o.status == 1 else 1) <= len(lines) <= 3, o
        assert all(len(line) <= 400 for line in lines), o
    return o


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_subprocess(argv, timeout=60, stdin=b""):
    """Run ``python -m pmemtrace ARGV`` under MEMORY_LIMIT and *timeout*."""
    p = subprocess.run(
        [sys.executable, "-m", "pmemtrace", *argv],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        preexec_fn=_limit_memory,
    )
    return Outcome(argv, p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"))
