"""Every embedded peer scenario, run by `pmemtrace run` in a lab guest on
emulated pmem; the outcome must be what the peer suite expects (the run
exits 0 only when every step matched and every written byte read back).
Where fs_dax tracepoints fire, the events are checked against the peer's
expectation (ndctl dax.sh, pmem-csi) and against the model's prediction for
the recorded case.
"""

import json
import os
import subprocess
import sys

import pytest

from pmemtrace.errors import LabError
from pmemtrace.model import explain, parse_case
from pmemtrace.model.geometry import namespace_layout
from pmemtrace.workload.scenario import embedded_names, load_embedded

from .labkit import skip_or_fail

PY = sys.executable
NOPAGE, FALLBACK = 0x100, 0x800
OUT = "/tmp/pmemtrace-live-scenarios"

FSDAX = [n for n in embedded_names() if load_embedded(n).mode == "fsdax"]
#: run here without tracing, for time (2.5 minutes of 7.3's tier under TCG):
#: test_check_live.py runs it traced on xfs on every lab kernel, this one
#: included, and compares each of its 262,144 accesses with the model
TRACED_IN_CHECK = {"ndctl-mmap-flags"}
DEVDAX = [n for n in embedded_names() if load_embedded(n).mode == "devdax"]


_RUNS = {}


def _run(name, args, tmp_name):
    """Run a scenario once per boot; the peer-expectation test and the
    model comparison read the same run (a boot under TCG is slow)."""
    key = (name, tuple(args))
    if key not in _RUNS:
        _RUNS[key] = _run_once(name, args, tmp_name)
    return _RUNS[key]


def _run_once(name, args, tmp_name):
    os.makedirs(OUT, exist_ok=True)
    out = os.path.join(OUT, tmp_name + ".json")
    p = subprocess.run(
        [PY, "-m", "pmemtrace", "run", name, *args, "--out", out, "--json"], capture_output=True, text=True, timeout=900
    )
    rec = json.loads(p.stdout) if p.stdout.strip().startswith("{") else None
    case = json.load(open(out)) if os.path.exists(out) else None
    return p, rec, case


def _assert_as_expected(name, p, rec):
    assert "Traceback" not in p.stderr, p.stderr
    assert rec is not None, p.stderr
    bad = [s for s in rec["steps"] if not s["match"]]
    assert p.returncode == 0 and not bad, (
        f"{name}: steps differ from the peer suite's expectation: {bad}\n{p.stderr}\nnotes: {load_embedded(name).notes}"
    )
    assert rec["corrupt"] == []


def _pmd_done(events):
    return [e for e in events if e["name"] == "dax_pmd_fault_done"]


@pytest.fixture(scope="module")
def fsdax_dir(guest):
    setup = guest.fsdax(map="mem", fs="xfs")
    d = os.path.join(setup["mount"], "scenarios")
    os.makedirs(d, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def dio_dir(guest):
    """The non-DAX O_DIRECT target (ndctl's cwd); without a second region
    the GUP steps use process_vm_readv/writev instead."""
    try:
        return guest.nodax()
    except pytest.skip.Exception:
        return None


def _dio(d):
    return ["--dio-dir", d] if d else []


@pytest.mark.parametrize("name", FSDAX)
def test_fsdax_scenario(name, fsdax_dir, dio_dir, lab_gate):
    untraced = ["--no-trace"] if name in TRACED_IN_CHECK else []
    p, rec, case = _run(name, ["--dir", fsdax_dir, *_dio(dio_dir), *untraced], f"{name}-{lab_gate.release}")
    _assert_as_expected(name, p, rec)
    assert [n for n in os.listdir(fsdax_dir) if n.startswith(".pmemtrace")] == []
    parse_case(case)
    assert case["device"]["mode"] == "fsdax"
    # a sparse file (fstests generic/428) legitimately has no extents before
    # the first write; every allocated one must show its FIEMAP extents
    assert bool(case["file"]["extents"]) == (load_embedded(name).alloc != "sparse"), case["file"]
    if untraced:
        assert rec["trace"].startswith("tracing not requested"), rec["trace"]
        return
    if rec["trace"] != "recorded":
        skip_or_fail(f"no fs_dax events recorded: {rec['trace']}")
    ev = _pmd_done(rec["events"])
    if name == "ndctl-dax-pmd":
        # dax.sh: >= 10 dax_pmd_fault_done, the first 10 NOPAGE (xfs su=2m)
        assert len(ev) >= 10, len(ev)
        assert all(e["fields"]["result"] & NOPAGE for e in ev[:10]), [hex(e["fields"]["result"]) for e in ev[:10]]
    if name == "pmem-csi-hugepage":
        # pmem-csi: one NOPAGE dax_pmd_fault_done whose ino and address match
        # the mapping.  The 4 KiB tail beyond the first 2 MiB may add a
        # FALLBACK attempt (vma-end) when no other mapping's page table
        # shares that block (docs/model-validation.md); nothing else.
        start = int(case["mappings"][0]["start"], 16)
        nopage = [e for e in ev if e["fields"]["result"] & NOPAGE]
        assert len(nopage) == 1, [hex(e["fields"]["result"]) for e in ev]
        assert nopage[0]["fields"]["ino"] == case["file"]["ino"]
        assert nopage[0]["fields"]["address"] == start
        assert all(
            e["fields"]["result"] & FALLBACK and e["fields"]["address"] >= start + (2 << 20)
            for e in ev
            if e is not nopage[0]
        ), ev


@pytest.mark.parametrize("name", [n for n in FSDAX if n.startswith("reason-")])
def test_model_predicts_observed_pmd_faults(name, fsdax_dir, dio_dir, lab_gate):
    """The recorded case, explained by the model, predicts the same
    dax_pmd_fault_done results (NOPAGE/FALLBACK per address) as observed."""
    p, rec, case = _run(name, ["--dir", fsdax_dir, *_dio(dio_dir)], f"{name}-{lab_gate.release}")
    _assert_as_expected(name, p, rec)
    if rec["trace"] != "recorded":
        skip_or_fail(f"no fs_dax events recorded: {rec['trace']}")
    pred = explain(parse_case(case)).to_json()
    want = [
        (e["fields"]["address"], bool(e["fields"]["result"] & NOPAGE))
        for r in pred["results"]
        for e in r["events"]
        if e["name"] == "dax_pmd_fault_done"
    ]
    got = [(e["fields"]["address"], bool(e["fields"]["result"] & NOPAGE)) for e in _pmd_done(rec["events"])]
    assert got == want, f"{name}: observed {got}, model {want}"


def _region_attr(name):
    with open(f"/sys/bus/nd/devices/region0/{name}") as f:
        return int(f.read().strip(), 0)


@pytest.mark.parametrize("name", DEVDAX)
def test_devdax_scenario(name, guest, dio_dir, lab_gate):
    scen = load_embedded(name)
    align = {4096: "4K", 2 << 20: "2M", 1 << 30: "1G"}[scen.device_align or (2 << 20)]
    try:
        dev = guest.devdax(align)
    except LabError as exc:
        # The lab's namespace may be too small for the align (1G on a 1 GiB
        # region): then the refusal itself is the claim under test, and the
        # model's nd_pfn_init() geometry must predict it (-ENXIO).
        layout = namespace_layout(
            _region_attr("size"),
            _region_attr("resource"),
            mode="devdax",
            map="dev",
            align=scen.device_align or (2 << 20),
            release=lab_gate.release,
        )
        if layout.error is None:
            raise
        assert "ENXIO" in layout.error and "No such device or address" in str(exc), (layout.error, str(exc))
        return
    p, rec, case = _run(name, ["--device", dev, *_dio(dio_dir)], f"{name}-{lab_gate.release}")
    _assert_as_expected(name, p, rec)
    c = parse_case(case)
    assert c.device.mode == "devdax" and c.device.align == scen.device_align
