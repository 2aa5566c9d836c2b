"""Scenarios: the embedded library parses, the model agrees with what every
scenario declares (its steps' expected outcomes, its reason, its fs_dax
event expectations), the runner works end to end on an ordinary
filesystem (--allow-non-dax), cleans up, verifies data, and the CLI refuses
unsafe targets."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pmemtrace.errors import NoDaxMapping, UsageError
from pmemtrace.model import explain, parse_case
from pmemtrace.model.reasons import REASONS
from pmemtrace.workload import engine as E
from pmemtrace.workload import target as T
from pmemtrace.workload.dryrun import dry_case
from pmemtrace.workload.runner import run_scenario
from pmemtrace.workload.scenario import ScenarioError, embedded_names, load_embedded, load_scenario, parse_scenario
from pmemtrace.workload.shadow import Shadow

PY = sys.executable
#: reason codes no user process can provoke on a given namespace: they are
#: properties of the namespace (pfn-*)
# properties of the namespace or of the driver the device is bound to, not of
# a process (the live soft-reserved test binds fsdev_dax for the last one)
NOT_A_SCENARIO = {"pfn-unaligned", "pfn-no-devmap", "devdax-fsdev-no-mmap"}

PEERS = [
    "ndctl-dax-pmd",
    "ndctl-device-dax-4k",
    "ndctl-device-dax-2m",
    "ndctl-device-dax-1g",
    "ndctl-mmap-flags",
    "fstests-generic-428",
    "fstests-generic-462",
    "pmem-csi-hugepage",
]


def pmemtrace(*args, **kw):
    return subprocess.run([PY, "-m", "pmemtrace", *args], capture_output=True, text=True, timeout=300, **kw)


def test_embedded_library_covers_peers_and_reasons():
    names = embedded_names()
    for p in PEERS:
        assert p in names
    for code in REASONS:
        if code not in NOT_A_SCENARIO:
            assert f"reason-{code}" in names, code
    for n in names:
        s = load_embedded(n)
        assert s.name == n
        assert s.expect, f"{n} must state the outcome the peer suite / model expects"
        assert s.peer or s.reason in REASONS
        if s.reason:
            assert n == f"reason-{s.reason}"


# ---- the oracle: what each scenario declares, against the model ----------
#
# A scenario declares per step the outcomes the kernel may give (``expect``:
# ok, sigbus, SIGSEGV, an errno name, or skipped when the engine must not
# even try), and optionally the fs_dax events a peer suite checks
# (``events``).  The model, run on the scenario's dry-run case, must agree:
# every failure it predicts is one some step allows, every step that must
# fail fails in the model, a reason scenario gets its reason, and the event
# expectations hold for the predicted events.


def _failure_kinds(expect):
    """Model failure kinds ``(outcome, errno)`` that an expected outcome allows."""
    if expect == "sigbus":
        return {("sigbus", None)}
    if expect in ("SIGSEGV", "skipped"):  # skipped: the kernel would SIGSEGV, the engine never touches it
        return {("error", None)}
    if expect.isupper():
        return {("error", getattr(errno, expect))}
    return set()


def _prediction(scen):
    return explain(parse_case(dry_case(scen))).to_json()


def _model_failures(pred):
    return [
        ((r["outcome"], r.get("errno")), r["reason"]) for r in pred["results"] if r["outcome"] in ("sigbus", "error")
    ]


def _event_expectations_hold(scen, pred):
    """scenario.events, as the live tier checks them, on the predicted events:
    {name: {count|min|first: N, result: NOPAGE|FALLBACK}}"""
    bits = {"NOPAGE": 0x100, "FALLBACK": 0x800}
    bad = []
    for name, want in scen.events.items():
        got = [e["fields"]["result"] for r in pred["results"] for e in r["events"] if e["name"] == name]
        bit = bits[want["result"]]
        if "count" in want and sum(1 for x in got if x & bit) != want["count"]:
            bad.append((name, "count", want["count"], [hex(x) for x in got]))
        if "min" in want and len(got) < want["min"]:
            bad.append((name, "min", want["min"], len(got)))
        if "first" in want and not all(x & bit for x in got[: want["first"]]):
            bad.append((name, "first", want["first"], [hex(x) for x in got[: want["first"]]]))
    return bad


#: scenarios whose declared expectation the model, on the dry-run case, does
#: not meet: strict xfails, so a fix shows up as a failure to update here
DISAGREE: dict[str, str] = {}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=DISAGREE[n])) if n in DISAGREE else n
        for n in embedded_names()
    ],
)
def test_model_agrees_with_the_scenario(name):
    scen = load_embedded(name)
    pred = _prediction(scen)
    assert pred["results"]
    allowed = set().union(*(_failure_kinds(x) for st in scen.steps for x in st.expect))
    failures = _model_failures(pred)
    # no failure the scenario rules out ...
    assert [f for f in failures if f[0] not in allowed] == [], (name, sorted(allowed))
    # ... and every step that must fail (no ok, not only skipped) fails in the model
    kinds = {k for k, _ in failures}
    for i, st in enumerate(scen.steps):
        # skipped: the engine skips the step when an earlier one failed,
        # which only the step-by-step run (tests/live) can tell apart
        if "ok" in st.expect or "skipped" in st.expect:
            continue
        need = set().union(*(_failure_kinds(x) for x in st.expect))
        assert need & kinds, f"{name} step {i} ({st.op}) must give one of {st.expect}; model: {failures}"
    if scen.reason:
        reasons = [r["reason"] for r in pred["results"]]
        if any(len(st.expect) > 1 and "ok" in st.expect for st in scen.steps):
            # an outcome that changed between kernels (the scenario's notes
            # cite the commit): the reason is the older kernel's
            old = dict(dry_case(scen), kernel="6.1.0-50-amd64")
            reasons = [r["reason"] for r in explain(parse_case(old)).to_json()["results"]]
        assert scen.reason in reasons
    assert _event_expectations_hold(scen, pred) == []


def test_oracle_rejects_disagreement():
    """The oracle is not vacuous: a scenario that expects the wrong outcome fails it."""
    wrong = parse_scenario({**load_embedded("reason-sigbus-eof").raw, "name": "wrong"})
    for st in wrong.steps:
        st.expect = ["ok"]
    allowed = set().union(*(_failure_kinds(x) for st in wrong.steps for x in st.expect))
    assert [f for f in _model_failures(_prediction(wrong)) if f[0] not in allowed]
    pmd = load_embedded("pmem-csi-hugepage")
    pmd.events = {"dax_pmd_fault_done": {"count": 2, "result": "NOPAGE"}}
    assert _event_expectations_hold(pmd, _prediction(pmd))


def test_dax_pmd_predicts_at_least_ten_pmd_faults():
    """ndctl's dax.sh wants >= 10 dax_pmd_fault_done for dax-pmd (the first
    10 NOPAGE: see DISAGREE); the model predicts 11, one a FALLBACK."""
    pred = _prediction(load_embedded("ndctl-dax-pmd"))
    pmd_faults = [
        e["fields"]["result"] for r in pred["results"] for e in r["events"] if e.get("name") == "dax_pmd_fault_done"
    ]
    assert len(pmd_faults) >= 10
    assert sum(1 for x in pmd_faults if x & 0x100) >= 10


def test_scenario_errors_name_the_key():
    base = {
        "name": "x",
        "mode": "fsdax",
        "file": {"size": "4M"},
        "mappings": [{"id": "m", "length": "4M"}],
        "steps": [{"op": "write", "mapping": "m"}],
    }
    parse_scenario(base)
    for patch, key in [
        ({"mode": "pmem"}, "mode"),
        ({"steps": [{"op": "poke", "mapping": "m"}]}, "op"),
        ({"steps": [{"op": "write", "mapping": "nope"}]}, "mapping"),
        ({"steps": [{"op": "write", "mapping": "m", "expect": "maybe"}]}, "expect"),
        ({"mappings": [{"id": "m", "length": "4Q"}]}, "length"),
        ({"mappings": [{"id": "m", "length": "4M", "colour": 1}]}, "colour"),
        ({"file": {"size": "4M", "alloc": "lots"}}, "alloc"),
    ]:
        with pytest.raises(ScenarioError) as ei:
            parse_scenario({**base, **patch})
        assert ei.value.key == key
        assert isinstance(ei.value, UsageError)
    with pytest.raises(UsageError):
        load_scenario("no-such-scenario")


def test_shadow_detects_wrong_words():
    sh = Shadow()
    sh.fill(0, 8192, 7)
    sh.word(4096 + 64, 9)
    good0 = E.pattern_bytes(7, 0, 4096)
    assert sh.check_page(0, good0) == []
    page1 = bytearray(E.pattern_bytes(7, 4096, 4096))
    page1[64:72] = E.pattern(9, 4096 + 64).to_bytes(8, "little")
    assert sh.check_page(4096, bytes(page1)) == []
    page1[800] ^= 1
    assert sh.check_page(4096, bytes(page1)) == [4096 + 800 - 800 % 8]
    page1[800] ^= 1
    page1[64] ^= 1
    assert sh.check_page(4096, bytes(page1)) == [4096 + 64]
    sh.fill(8192, 4096, "zero")
    assert sh.check_page(8192, bytes(4096)) == []
    assert sh.check_page(8192, b"\0" * 100 + b"\1" + b"\0" * 3995) == [8192 + 96]


# ---- end to end on an ordinary filesystem --------------------------------


@pytest.fixture
def nondax(tmp_path):
    d = tmp_path / "scratch"
    d.mkdir()
    try:
        E.fiemap(str(tmp_path))
    except E.EngineError:
        pass
    return T.open_dir(str(d), allow_non_dax=True)


def _leftovers(path):
    return [n for n in os.listdir(path) if n.startswith(".pmemtrace")]


def test_run_dax_pmd_on_plain_files(nondax, tmp_path):
    dio = tmp_path / "dio"
    dio.mkdir()
    res = run_scenario(load_embedded("ndctl-dax-pmd"), nondax, dio_dir=str(dio), trace=False)
    assert res.error is None, res.error
    assert res.matches, [s for s in res.steps if not s["match"]]
    assert not res.corrupt and res.verified_pages == 64 * 256
    gups = [s for s in res.steps if s["op"] == "gup"]
    assert len(gups) == 4 and all(s["bytes"] == 4096 and s["via"] == "odirect" for s in gups)
    assert _leftovers(nondax.path) == [] and _leftovers(str(dio)) == []
    case = parse_case(res.case)  # the recorded case is valid model input
    starts = {m.id: m.start for m in case.mappings}
    assert starts["remap"] % (2 << 20) == 0
    assert starts["dio0"] == starts["dio4"]
    assert case.file.size == 64 << 20 and case.file.extents
    assert sum(e.length for e in case.file.extents) == 64 << 20


def test_run_outcomes_sigbus_efault_sigsegv(nondax):
    r = run_scenario(load_embedded("reason-sigbus-eof"), nondax, trace=False)
    assert r.steps[0]["outcome"] == "sigbus" and r.matches
    assert r.steps[0]["fault_offset"] == 2 << 20
    r = run_scenario(load_embedded("fstests-generic-462"), nondax, trace=False)
    assert r.steps[1]["outcome"] == "EFAULT" and r.matches and not r.corrupt
    r = run_scenario(load_embedded("reason-write-readonly"), nondax, trace=False)
    assert r.steps[0]["outcome"] == "SIGSEGV" and r.matches
    assert _leftovers(nondax.path) == []


def test_unexpected_sigbus_kills_only_the_worker(nondax):
    """A touch past EOF that the scenario did not expect: the worker dies, we
    record it and clean up."""
    scen = parse_scenario(
        {
            "name": "oops",
            "mode": "fsdax",
            "file": {"size": "1M"},
            "mappings": [{"id": "m", "length": "2M"}],
            "steps": [{"op": "write", "mapping": "m", "length": "2M"}, {"op": "read", "mapping": "m"}],
        }
    )
    r = run_scenario(scen, nondax, trace=False)
    assert r.worker_signal == "SIGBUS"
    assert r.steps[0]["outcome"] == "sigbus" and not r.steps[0]["match"]
    assert r.steps[1]["outcome"] == "not-run"
    assert not r.matches and _leftovers(nondax.path) == []


def test_generic_428_sees_pwrite_through_mapping(nondax):
    r = run_scenario(load_embedded("fstests-generic-428"), nondax, trace=False)
    assert [s["outcome"] for s in r.steps] == ["ok", "ok", "ok"]


def test_recorded_case_explains_on_any_host(nondax, tmp_path):
    r = run_scenario(load_embedded("reason-vma-end"), nondax, trace=False)
    out = tmp_path / "case.json"
    out.write_text(json.dumps(r.case))
    p = pmemtrace("explain", str(out), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["results"]


# ---- CLI -----------------------------------------------------------------


def test_cli_refuses_non_dax_dir_and_non_devdax_device(tmp_path):
    p = pmemtrace("run", "reason-vma-end", "--dir", str(tmp_path))
    assert p.returncode == NoDaxMapping.exit_status and "not mounted with -o dax" in p.stderr
    assert "Traceback" not in p.stderr and os.listdir(tmp_path) == []
    p = pmemtrace("run", "reason-devdax-private", "--device", "/dev/null")
    assert p.returncode != 0 and "not device-dax" in p.stderr and "Traceback" not in p.stderr
    f = tmp_path / "plain"
    f.write_text("x")
    p = pmemtrace("run", "reason-devdax-private", "--device", str(f))
    assert p.returncode != 0 and "not a character device" in p.stderr
    p = pmemtrace("run", "reason-devdax-private", "--dir", str(tmp_path))
    assert p.returncode == 2 and "devdax scenario" in p.stderr
    p = pmemtrace("run", "nope", "--dir", str(tmp_path))
    assert p.returncode == 2 and "no embedded scenario" in p.stderr


def test_cli_run_writes_case_and_record(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    out = tmp_path / "c.json"
    p = pmemtrace("run", "reason-nohugepage", "--dir", str(d), "--allow-non-dax", "--out", str(out), "--json")
    assert p.returncode == 0, p.stderr
    rec = json.loads(p.stdout)
    assert rec["matches"] and rec["scenario"] == "reason-nohugepage"
    assert json.loads((tmp_path / "c.run.json").read_text())["steps"] == rec["steps"]
    parse_case(json.loads(out.read_text()))
    assert os.listdir(d) == []


def test_cli_list_show_dry_run():
    p = pmemtrace("run", "--list", "--json")
    assert p.returncode == 0
    assert {x["name"] for x in json.loads(p.stdout)} == set(embedded_names())
    p = pmemtrace("run", "--show", "fstests-generic-428")
    assert json.loads(p.stdout)["name"] == "fstests-generic-428"
    p = pmemtrace("run", "reason-vma-start", "--dry-run")
    assert p.returncode == 0
    parse_case(json.loads(p.stdout))


def test_ctrl_c_removes_scratch_files(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    scen = {
        "name": "long",
        "mode": "fsdax",
        "file": {"size": "256M"},
        "mappings": [{"id": "m", "length": "256M"}],
        "steps": [{"op": "write", "mapping": "m", "length": "256M"}] * 400,
    }
    sf = tmp_path / "long.json"
    sf.write_text(json.dumps(scen))
    proc = subprocess.Popen(
        [PY, "-m", "pmemtrace", "run", str(sf), "--dir", str(d), "--allow-non-dax", "--no-trace"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C must reach it even when the test runner itself was started
        # in the background (SIGINT ignored, and Python keeps it ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    for _ in range(100):
        if _leftovers(d):
            break
        time.sleep(0.05)
    assert _leftovers(d), "the run never created its scratch file"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert _leftovers(d) == []
