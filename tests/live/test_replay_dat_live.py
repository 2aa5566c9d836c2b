"""``pmemtrace replay trace.dat`` on a file this kernel's fs_dax events were
just recorded into by Debian's trace-cmd (its defaults: what users have).

Oracle: the workload's own arithmetic (N aligned shared 2 MiB writes: N PMD
faults; the same at file offset 4 KiB: N fallbacks, pmd-colour-mismatch),
and ``trace-cmd report``'s text of the same file replayed: the mappings are
shared, which its text prints faithfully on every kernel, so both replays
must agree row for row.  Catches an fs_dax format or .dat layout a kernel or
trace-cmd changes.  Cost: one trace-cmd record of two short workloads and
two in-process replays: 31.7 s on 6.12 under TCG on a loaded host, plus
the fsdax xfs setup most live tests share (18 s there).
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from pmemtrace.cli import main

from .labkit import skip_or_fail
from .test_watch_bcc import WORKLOAD, N, _fresh


def _replay_json(capsys, *argv):
    """``pmemtrace replay ... --json`` in this process (no interpreter start
    under TCG): its parsed output."""
    capsys.readouterr()
    rc = main(["replay", *argv, "--json"])
    out, err = capsys.readouterr()
    assert rc == 0 and "Traceback" not in err, err
    return json.loads(out)


@pytest.fixture
def dax(guest):
    """The fsdax xfs most live tests use (reused when already set up)."""
    return guest.fsdax(map="mem", align="2M", fs="xfs")["mount"]


def test_replay_of_trace_cmd_dat(dax, tmp_path, capsys):
    if not shutil.which("trace-cmd"):
        skip_or_fail("trace-cmd is not installed (scripts/install-deps.sh installs it)")
    wl = tmp_path / "wl.py"
    wl.write_text(WORKLOAD)
    a, b = _fresh(dax, "dat-pmd"), _fresh(dax, "dat-colour")
    dat = str(tmp_path / "x.dat")
    script = f"{sys.executable} {wl} {a} pmd {N} && {sys.executable} {wl} {b} colour {N}"
    p = subprocess.run(
        ["trace-cmd", "record", "-e", "fs_dax", "-o", dat, "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=str(tmp_path),
    )
    assert p.returncode == 0, p.stderr[-2000:]
    d = _replay_json(capsys, dat)
    assert d["input"]["format"] == "trace-cmd.dat"
    assert d["header"]["kernel"] == os.uname().release
    rows = sorted(d["rows"], key=lambda row: row["pmd"])
    assert [(x["pmd"], x["fallback"]) for x in rows] == [(0, N), (N, 0)], rows
    assert rows[0]["fallback_reasons"] == {"pmd-colour-mismatch": N}, rows[0]
    txt = tmp_path / "x.txt"
    with open(txt, "w") as f:
        subprocess.run(["trace-cmd", "report", "-i", dat], stdout=f, stderr=subprocess.DEVNULL, check=True, timeout=600)
    dt = _replay_json(capsys, str(txt), "--kernel", os.uname().release)
    for x in (d, dt):
        x.pop("input")
        x.pop("header", None)
    assert d == dt
