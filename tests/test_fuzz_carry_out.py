"""What ``run --case``/``check --case`` refuse or take out before carrying a
case out, so that the kernel is never compared with a model of another
case: a GUP longer than the executor's GUP_MAX is refused (exit 2, one
line, before anything runs; it used to be cut to 4 MiB silently), and
without ``--dio-dir`` the O_DIRECT GUPs are taken out of the case the
model is asked about (they fault pages in that later accesses find)."""

import copy
import json

from fuzzkit import check, run_cli

from pmemtrace.fuzz.execute import GUP_MAX, is_odirect, without_odirect
from pmemtrace.model import explain, parse_case

CASE = {
    "version": 1,
    "kernel": "6.12.95+deb12-amd64",
    "device": {"mode": "fsdax", "map": "mem", "align": "2M", "size": "1G", "data_start": "0x100000000"},
    "file": {"size": "16M", "fs": "xfs", "extents": [{"logical": 0, "physical": "0x600000", "length": "16M"}]},
    "mappings": [{"id": "m0", "start": "0x7f2000000000", "length": "16M", "offset": 0}],
    "accesses": [
        {"mapping": "m0", "op": "gup", "offset": 0, "length": "4K", "write": True},  # O_DIRECT read into it
        {"mapping": "m0", "op": "gup", "offset": "4M", "length": "4K", "write": True, "fast": False},
        {"mapping": "m0", "op": "gup", "offset": "6M", "length": "4K", "write": True, "longterm": True},
        {"mapping": "m0", "op": "read", "offset": 0},
    ],
}


def test_odirect_gups_are_taken_out_not_skipped():
    full = parse_case(CASE)
    assert [is_odirect(a) for a in full.accesses] == [True, False, False, False]
    less, n = without_odirect(CASE)
    assert n == 1 and less["accesses"] == CASE["accesses"][1:]
    assert CASE["accesses"][0]["op"] == "gup"  # the caller's case is not changed
    # why out and not skipped: the O_DIRECT GUP maps the block the read
    # then finds; without it the read is a fault of its own
    faults_full = explain(full).results[-1].faults
    faults_less = explain(parse_case(less)).results[-1].faults
    assert not faults_full and faults_less


def test_a_gup_longer_than_the_executor_takes_is_refused(tmp_path):
    case = copy.deepcopy(CASE)
    case["accesses"][1]["length"] = GUP_MAX + 4096
    path = tmp_path / "long-gup.json"
    path.write_text(json.dumps(case))
    for cmd in ("run", "check"):
        o = check(run_cli([cmd, "--case", str(path), "--dir", str(tmp_path)]), {2})
        assert "access 1: a GUP of 4100 KiB" in o.err and "split it" in o.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long-gup.json"]  # nothing left behind
    case["accesses"][1]["length"] = GUP_MAX
    path.write_text(json.dumps(case))
    o = run_cli(["run", "--case", str(path), "--dir", str(tmp_path)])
    assert "a GUP of" not in o.err  # at GUP_MAX it goes on (and fails later: no DAX here)
