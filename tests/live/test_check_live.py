"""`pmemtrace check --all` in a lab guest: every embedded fsdax scenario
runs under fs_dax tracing and every access must agree with the model's
prediction (same fault events, same pages, same result classes, nothing
extra), on xfs and on ext4 (ext4 retries PMD faults under the per-VMA
lock on 6.12+; xfs does not: docs/model-validation.md).  On ext4 the
262,144-access ndctl-mmap-flags matrix is not run, for time only (about 1.5
minutes per kernel under TCG); ext4's own behaviour (the VMA-lock retry of
PMD faults) shows in the PMD faults of every other scenario.

Oracle: the kernel's own tracepoints, compared event by event with the
reference model run on the case the run recorded.
"""

import json
import os
import subprocess
import sys

import pytest

from pmemtrace.workload.scenario import embedded_names, load_embedded

from .labkit import skip_or_fail

FSDAX = [n for n in embedded_names() if load_embedded(n).mode == "fsdax"]
SKIP_ON = {"ext4": {"ndctl-mmap-flags"}}
_RESULTS = {}


def _check_all(guest, fs):
    if fs not in _RESULTS:
        setup = guest.fsdax(map="mem", fs=fs)
        d = os.path.join(setup["mount"], "check")
        os.makedirs(d, exist_ok=True)
        try:
            dio = ["--dio-dir", guest.nodax()]
        except pytest.skip.Exception:
            dio = []
        names = [n for n in FSDAX if n not in SKIP_ON.get(fs, ())]
        p = subprocess.run(
            [sys.executable, "-m", "pmemtrace", "check", *names, "--dir", d, *dio, "--json"],
            capture_output=True,
            text=True,
            timeout=1500,
        )
        assert "Traceback" not in p.stderr, p.stderr
        assert p.stdout.strip().startswith("{"), p.stderr[-3000:]
        out = json.loads(p.stdout)
        # exit status 1 exactly when some scenario disagrees
        assert p.returncode == (0 if out["agree"] else 1), (p.returncode, p.stderr[-2000:])
        assert os.listdir(d) == [], os.listdir(d)  # scratch files removed
        _RESULTS[fs] = {r["scenario"]: r for r in out["results"]}
    return _RESULTS[fs]


@pytest.mark.parametrize("fs,name", [(fs, n) for fs in ("xfs", "ext4") for n in FSDAX if n not in SKIP_ON.get(fs, ())])
def test_check_agrees(name, fs, guest, lab_gate):
    res = _check_all(guest, fs)
    assert name in res, sorted(res)
    r = res[name]
    if not r.get("comparable"):
        if r.get("error"):
            pytest.fail(f"{name} on {fs}: {r['error']}")
        skip_or_fail(f"{name} on {fs}: not compared: {r.get('trace')}")
    bad = [x for x in r["rows"] if not x["agree"]]
    assert r["agree"] and not bad, f"{name} on {fs} ({r.get('profile')}): {json.dumps(bad, indent=1)[:4000]}"
    assert r["accesses"] > 0 and r["agreeing"] == r["accesses"], r
