"""One command per row of docs/exit-status.md, through the real CLI."""

import gzip
import inspect
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from fuzzkit import check, run_cli

from pmemtrace import errors
from pmemtrace.errors import (
    EXIT_DATA,
    EXIT_FINDING,
    EXIT_HOST,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STATUSES,
    EXIT_USAGE,
    PmemtraceError,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "exit-status.md")


def test_row_0_ok():
    o = check(run_cli(["explain", "--example", "dax-pmd", "--json"]), {EXIT_OK})
    assert o.out.startswith("{")


def test_row_1_finding():
    # the kernel refuses this namespace layout (a 1 GiB align needs a 1 GiB-aligned start)
    o = check(
        run_cli(["model", "namespace", "--size", "1G", "--start", "4G", "--align", "1G", "--json"]), {EXIT_FINDING}
    )
    assert '"error"' in o.out


def test_row_2_bad_input(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{"version": 1, "mappings": [{"id": 7}]}')
    o = check(run_cli(["explain", str(p)]), {EXIT_USAGE})
    assert o.err.startswith("pmemtrace: case:")


def test_row_2_usage_from_argparse():
    o = check(run_cli(["explain", "--no-such-option"]), {EXIT_USAGE})
    assert len(o.err.strip().splitlines()) == 2


def test_row_3_corrupt_data(tmp_path):
    p = tmp_path / "t.gz"
    p.write_bytes(gzip.compress(b"x-1 [000] 1.0: dax_pte_fault: junk\n" * 1000)[:100])
    check(run_cli(["replay", str(p)]), {EXIT_DATA})


def test_row_4_missing_host_feature(tmp_path):
    # a scenario that needs a DAX mount, given a directory that is not one
    o = check(run_cli(["run", "reason-vma-end", "--dir", str(tmp_path)]), {EXIT_HOST})
    assert "dax" in o.err.lower() and os.listdir(tmp_path) == []


def test_row_130_interrupted():
    # replay reading stdin blocks; Ctrl-C (SIGINT) ends it with 130
    p = subprocess.Popen(
        [sys.executable, "-m", "pmemtrace", "replay", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # Ctrl-C must reach it even when the test runner itself was started
        # in the background (SIGINT ignored, and Python keeps it ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        time.sleep(1.5)  # let it reach the read
        p.send_signal(signal.SIGINT)
        _out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == EXIT_INTERRUPTED and b"interrupted" in err and b"Traceback" not in err


def _error_classes():
    return [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, PmemtraceError)]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_error_class_has_a_documented_status(cls):
    assert cls.exit_status in EXIT_STATUSES
    doc = open(DOC).read()
    if cls is not PmemtraceError:
        row = next(line for line in doc.splitlines() if f"`{cls.__name__}`" in line)
        assert row.startswith(f"| {cls.exit_status} |"), (cls, row)


def test_doc_table_lists_every_status():
    doc = open(DOC).read()
    rows = {int(m.group(1)) for m in re.finditer(r"^\| (\d+) \|", doc, re.M)}
    assert rows == set(EXIT_STATUSES)
