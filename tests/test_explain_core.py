"""The compiled explain core against the Python model: the same bytes.

pmemtrace/model/core.py runs a streamed case of its declared subset in C
(cffi_build/explain_core.c), which mirrors the Python fault paths.  Every
test here runs a case both ways -- ``explain(case, stream=True,
compiled=False)``, the Python model alone, and ``compiled=True`` -- and
compares the whole ``--json`` and ``--jsonl`` output (every result, event,
reason, probe hit and the summary) byte for byte: on every embedded
example, every scenario, generated cases and random ones (hypothesis).  A
rule changed in Python and not in C fails here.
"""

import io
import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmemtrace.cli.explain import example_names, load_example, write_json, write_jsonl
from pmemtrace.fuzz.generate import generate
from pmemtrace.model import core, explain, parse_case
from pmemtrace.model.profiles import RELEASE_SPANS
from pmemtrace.workload.dryrun import dry_case
from pmemtrace.workload.scenario import embedded_names, load_embedded

M = 1 << 20
A = 0x7F0000000000
#: one release per profile
KERNELS = [f"{first[0]}.{first[1]}" for first, _, _ in RELEASE_SPANS]


@pytest.fixture(autouse=True)
def _compiled_core(monkeypatch):
    # the unit tier runs where scripts/install-deps.sh built the module
    # (PMEMTRACE_REQUIRE_ENGINE=1): its absence is a failure, not a skip
    assert core._explain_core is not None, "pmemtrace._explain_core is not built: pip install -e . with a C compiler"
    monkeypatch.delenv(core.PURE_ENV, raising=False)


def _out(make_case, compiled, writer):
    pred = explain(make_case(), stream=True, compiled=compiled)
    buf = io.BytesIO()
    writer(pred, buf)
    return buf.getvalue()


def same_both_ways(make_case):
    """Asserts the compiled and the Python path write the same --json and
    --jsonl bytes; returns True when (part of) the case ran in the core.  A
    case the core does not take runs the same Python code both ways: it is
    run once."""
    ran = []
    real = core.encoded_blocks

    def counted(*a, **kw):
        ran.append(1)
        return real(*a, **kw)

    for writer in (write_json, write_jsonl):
        core.encoded_blocks = counted
        try:
            got = _out(make_case, True, writer)
        finally:
            core.encoded_blocks = real
        if not ran:
            return False
        want = _out(make_case, False, writer)
        if got != want:
            k = next((i for i, (x, y) in enumerate(zip(got, want)) if x != y), min(len(got), len(want)))
            raise AssertionError(
                f"{writer.__name__}: first difference at byte {k}: {got[k - 200 : k + 200]!r} != {want[k - 200 : k + 200]!r}"
            )
    return True


@pytest.mark.parametrize("name", example_names())
def test_every_example_is_the_same(name):
    same_both_ways(lambda: load_example(name))


def test_the_examples_of_the_subset_run_in_the_core():
    ran = {name for name in example_names() if same_both_ways(lambda name=name: load_example(name))}
    # the plain fsdax read/write examples (a regression to "nothing runs
    # compiled" would leave the tests above vacuous)
    for name in ("aligned-shared", "huge-zero", "private-write", "pfn-unaligned", "ext4-vma-lock-retry"):
        assert name in ran
    # and what is outside the subset does not (device-dax, gup, madvise; the
    # MAP_SYNC writeback the core does not mirror: core.rules_not_mirrored())
    assert "devdax-2m" not in ran
    assert "map-sync" not in ran


@pytest.mark.parametrize("name", embedded_names())
def test_every_scenario_is_the_same(name):
    same_both_ways(lambda: parse_case(dry_case(load_embedded(name))))


def _num(x):
    return int(x, 0) if isinstance(x, str) else x


def _mirrored_rules_only(obj):
    """*obj* without what makes core.rules_not_mirrored() send a case to
    Python: no MAP_SYNC mapping, no recorded placement, holes filled with
    written extents at fresh physical addresses, ext4 extents written."""
    f = obj["file"]
    for m in obj.get("mappings", []):
        m["sync"] = False
    f.pop("allocated", None)
    exts = sorted(
        (
            {**e, "logical": _num(e["logical"]), "physical": _num(e["physical"]), "length": _num(e["length"])}
            for e in f["extents"]
        ),
        key=lambda e: e["logical"],
    )
    fresh = max((e["physical"] + e["length"] for e in exts), default=0)
    fresh = (fresh + 2 * M - 1) // (2 * M) * (2 * M)
    out, covered = [], 0
    end = (_num(f["size"]) + 4095) // 4096 * 4096
    for e in [*exts, {"logical": end, "length": 0}]:
        if e["logical"] > covered:
            out.append({"logical": covered, "physical": fresh, "length": e["logical"] - covered, "unwritten": False})
            fresh += e["logical"] - covered
        if e["length"]:
            out.append({**e, "unwritten": e["unwritten"] and f.get("fs") != "ext4"})
        covered = max(covered, e["logical"] + e["length"])
    f["extents"] = out
    return obj


def _plain(obj):
    """A generated case cut to the subset: its mappings all mapped, its
    plain reads and writes inside them (writes to writable ones)."""
    maps = {m["id"]: m for m in obj.get("mappings", [])}
    for m in maps.values():
        m["mapped"] = True
    acc = []
    for a in obj.get("accesses", []):
        m = maps.get(a.get("mapping"))
        if a.get("op") not in ("read", "write") or m is None:
            continue
        if a.get("offset", 0) >= m["length"] or (a["op"] == "write" and not m.get("writable", True)):
            continue
        acc.append({"op": a["op"], "mapping": a["mapping"], "offset": a.get("offset", 0)})
    obj["accesses"] = acc
    _mirrored_rules_only(obj)
    return obj


def check_generated(seed, count, same):
    """Runs the comparison *same* on each fsdax case of generate(seed,
    0..count-1) (a profile after another), as generated and cut to the
    subset by _plain(); returns how many of those ran in the core."""
    ran = 0
    for i in range(count):
        kernel = KERNELS[(i * 7 + seed) % len(KERNELS)]
        obj = generate(seed, i, kernel=kernel)
        if obj["device"]["mode"] != "fsdax":
            continue
        same(lambda obj=obj: parse_case(obj))  # as generated (most are outside the subset)
        plain = _plain(generate(seed, i, kernel=kernel))
        try:
            parse_case(plain)
        except Exception:  # e.g. overlapping mappings once all are mapped: not a case
            continue
        ran += same(lambda plain=plain: parse_case(plain))
    return ran


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_cases_are_the_same(seed):
    assert check_generated(seed, 40, same_both_ways) >= 5


@st.composite
def subset_cases(draw):
    """Random fsdax cases of the subset: extents with holes, unwritten and
    physically misaligned ones, a file size that need not be 2 MiB aligned,
    shared/private/MAP_SYNC/read-only/nohugepage mappings at aligned or
    misaligned addresses and file offsets, reads and writes clustered so
    that blocks are revisited."""
    kernel = draw(st.sampled_from(KERNELS))
    fs = draw(st.sampled_from(["xfs", "ext4"]))
    n_ext = draw(st.integers(0, 6))
    exts, pos, phys = [], 0, 0
    for _ in range(n_ext):
        pos += draw(st.sampled_from([0, 0, 4096, 2 * M, 3 * M]))
        length = draw(st.sampled_from([4096, 64 * 1024, 1 * M, 2 * M, 4 * M, 6 * M]))
        phys += draw(st.sampled_from([0, 0, 4096, 1 * M, 2 * M]))
        exts.append({"logical": pos, "physical": phys, "length": length, "unwritten": draw(st.booleans())})
        pos += length
        phys += length
    # sizes at and around 2 MiB boundaries (the EOF checks of the PMD path)
    size = draw(
        st.sampled_from([max(pos, 4096), pos + 4096])
        | st.builds(lambda k, d: k * 2 * M + d, st.integers(1, 8), st.sampled_from([-4096, 0, 4096, 1 * M]))
    )
    maps, at = [], A
    for k in range(draw(st.integers(1, 3))):
        length = draw(st.sampled_from([4096, 1 * M, 2 * M, 4 * M, 6 * M, 8 * M + 4096]))
        at += draw(st.sampled_from([0, 4096, 1 * M, 2 * M]))
        maps.append(
            {
                "id": f"m{k}",
                "start": at,
                "length": length,
                "offset": draw(st.sampled_from([0, 0, 4096, 1 * M, 2 * M])),
                "shared": draw(st.booleans()),
                "sync": draw(st.booleans()),
                "writable": draw(st.sampled_from([True, True, False])),
                "nohugepage": draw(st.sampled_from([False, False, True])),
            }
        )
        at += (length + 2 * M - 1) // (2 * M) * (2 * M) + 2 * M
    accesses = []
    for _ in range(draw(st.integers(1, 60))):
        m = draw(st.sampled_from(maps))
        off = draw(st.integers(0, (m["length"] - 1) // 4096)) * 4096
        op = draw(st.sampled_from(["read", "write"])) if m["writable"] else "read"
        accesses.append({"op": op, "mapping": m["id"], "offset": off})
        if draw(st.booleans()):  # come back to the same page or its block
            accesses.append(
                {
                    "op": draw(st.sampled_from(["read", "write"])) if m["writable"] else "read",
                    "mapping": m["id"],
                    "offset": off ^ draw(st.sampled_from([0, 4096, 1 * M])) if (off ^ 4096) < m["length"] else off,
                }
            )
    accesses = [a for a in accesses if a["offset"] < next(m for m in maps if m["id"] == a["mapping"])["length"]]
    if draw(st.integers(0, 2)) == 0:
        # accesses the core leaves to the Python model, which goes on with
        # the state the core hands over (and may hand nothing back)
        for _ in range(draw(st.integers(1, 4))):
            m = draw(st.sampled_from(maps))
            other = draw(
                st.sampled_from(
                    [
                        {"op": "madvise", "advice": "dontneed", "offset": 0, "length": m["length"]},
                        {"op": "madvise", "advice": "nohugepage", "offset": 0, "length": 2 * M},
                        {"op": "munmap"},
                        {"op": "gup", "offset": 0, "length": 8192, "write": True},
                        {"op": "read", "offset": m["length"] + 4096},  # outside the mapping: SIGSEGV
                        {"op": "write", "offset": 0},  # to a read-only mapping: SIGSEGV (else a plain write)
                    ]
                )
            )
            other["mapping"] = m["id"]
            accesses.insert(draw(st.integers(0, len(accesses))), other)
    obj = {
        "version": 1,
        "kernel": kernel,
        "thp_disable": draw(st.sampled_from([False, False, False, True])),
        "device": {
            "mode": "fsdax",
            "size": "64G",
            "data_start": draw(st.sampled_from([0, 4096, 2 * M])),
            "struct_pages": draw(st.sampled_from([True, True, False])),
        },
        "file": {"size": size, "fs": fs, "extents": exts},
        "mappings": maps,
        "accesses": accesses,
    }
    # half of them within the rules the core mirrors, so that C runs them
    return _mirrored_rules_only(obj) if draw(st.booleans()) else obj


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subset_cases())
def test_random_cases_are_the_same(obj):
    same_both_ways(lambda: parse_case(obj))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subset_cases())
def test_the_core_hands_over_the_python_models_state(obj):
    """After the core's accesses (up to the first outside the subset), the
    Sim it hands over is the one the Python model has after them."""
    from itertools import islice

    from pmemtrace.model.engine import _run

    case = parse_case(obj)
    run = core.prepare(case, explain(case, stream=True)._sim, b",")
    if run is None:
        return
    lib, ffi = core._explain_core.lib, core._explain_core.ffi
    pos, used, buf = ffi.new("int64_t *", 0), ffi.new("int64_t *", 0), ffi.new("char[]", 1 << 16)
    while pos[0] < run.k:  # the core's part (with no templates, it stops at every new shape)
        rc = lib.pmx_run(run.x, *core._columns(run), run.k, pos, buf, len(buf), used)
        if rc == lib.PMX_NEW_SHAPE:
            lib.pmx_set_template(run.x, lib.pmx_pending(run.x).shape, ffi.NULL, ffi.NULL, ffi.NULL, -1)
    core.hand_over(run)
    counters = ffi.new("int64_t[4]")
    lib.pmx_counters(run.x, counters)
    pure = explain(parse_case(obj), stream=True)._sim  # a fresh Sim, as explain() sets it up
    for _ in islice(_run(pure.case, pure), run.k):
        pass
    assert _state(run.sim) == _state(pure)
    assert list(counters) == list(pure.counters.values())


def _state(sim):
    fs = sim.file
    slot = {
        k: ("huge", v.writable, v.zero)
        if v.__class__.__name__ == "HugePmd"
        else (v.present, v.writable, v.anon, v.zero)
        for k, v in sim.mm.pmds.items()
    }
    ent = {k: getattr(v, "kind", None) or (v.present, v.zero) for k, v in fs.entries.items()}
    exts = [[(e.logical, e.physical, e.length, e.unwritten) for e in c] for c in fs._chunks]
    zero_seen = "thp_zero_page_alloc" in sim.flags_seen
    # anon_vma ids are labels (the kernel's pointers): which VMAs have one
    # and which share one is the state, not the numbers handed out in
    # whatever order the COWs came (the core labels them in VMA order)
    label: dict = {}
    anon = [(v.mapping, label.setdefault(v.anon_vma, len(label))) for v in sim.mm.vmas if v.anon_vma is not None]
    return slot, ent, exts, fs._heads, fs._starts, fs.datasync_dirty, fs._next_phys, zero_seen, anon


def benchmark_case(accesses, extents):
    """The case of benchmarks/bench_model.py (and bench_explain_e2e.py), smaller."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    try:
        from bench_model import build
    finally:
        sys.path.pop(0)
    return build(accesses, extents)


def test_the_benchmark_shape_is_the_same():
    obj = benchmark_case(30_000, 300)
    assert same_both_ways(lambda: parse_case(obj))


def test_pure_python_switch_and_a_missing_module(monkeypatch):
    case = load_example("aligned-shared")
    pred = explain(case, stream=True)
    assert core.prepare(case, pred._sim, b",") is not None
    monkeypatch.setenv(core.PURE_ENV, "1")
    assert core.prepare(case, pred._sim, b",") is None
    monkeypatch.delenv(core.PURE_ENV)
    monkeypatch.setattr(core, "_explain_core", None)  # as where it was not built
    assert not core.available()
    assert not same_both_ways(lambda: load_example("aligned-shared"))


def cli_with_and_without_the_core(*args):
    """The stdout of ``pmemtrace *args``, with the core and with
    PMEMTRACE_PURE_PYTHON=1."""
    env = dict(os.environ)
    outs = []
    for pure in ("0", "1"):
        env[core.PURE_ENV] = pure
        p = subprocess.run([sys.executable, "-m", "pmemtrace", *args], capture_output=True, env=env, check=True)
        outs.append(p.stdout)
    return outs


def test_the_cli_writes_the_same_without_the_core():
    outs = cli_with_and_without_the_core("explain", "--example", "map-sync", "--json")
    assert outs[0] == outs[1] and outs[0].startswith(b'{"profile":')


# -- the core's reader of accesses (pmx_scan_accesses) against msgspec -------

_KEYS = st.sampled_from(["op", "mapping", "offset", "length", "write", "advice", "opx", "op\\u0000"])
_VALUES = st.one_of(
    st.sampled_from(["read", "write", "gup", "m0", "m1", 'm"1', "mé", None, True, 1.0, -1, "4096"]),
    st.integers(0, 1 << 64),
    st.integers(0, 1 << 20),
)


@st.composite
def access_lists(draw):
    """JSON texts of access lists: mostly plain, with spellings the reader
    must leave to msgspec (escapes, floats, big numbers, unknown or
    repeated keys, other ops) and whitespace anywhere JSON allows it."""
    items = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            d = {"op": draw(st.sampled_from(["read", "write"])), "mapping": draw(st.sampled_from(["m0", "m1"]))}
            if draw(st.booleans()):
                d["offset"] = draw(st.integers(0, 1 << 40))
            if draw(st.booleans()):
                d["length"] = draw(st.integers(0, 1 << 20))
            if draw(st.booleans()):
                del d["mapping"]
            keys = draw(st.permutations(list(d)))
            text = ",".join(f"{json.dumps(k)}:{json.dumps(d[k])}" for k in keys)
        else:
            pairs = draw(st.lists(st.tuples(_KEYS, _VALUES), max_size=5))
            text = ",".join(f'"{k}":{json.dumps(v)}' for k, v in pairs)
        items.append("{" + text + "}")
    sep = draw(st.sampled_from([",", ", ", "\n,\t", " ,\r\n "]))
    pad = draw(st.sampled_from(["", " ", "\n  "]))
    text = pad + "[" + pad + sep.join(items) + pad + "]" + pad
    if draw(st.integers(0, 9)) == 0:  # damaged
        k = draw(st.integers(0, len(text)))
        text = text[:k] + draw(st.sampled_from(["", "}", "]", ",", '"', "x"])) + text[k + 1 :]
    return text.encode()


def _as_tuples(accesses):
    return [(a.op, a.mapping, a.offset, a.length, a.advice, a.write) for a in accesses]


@settings(max_examples=500, deadline=None)
@given(access_lists(), st.sampled_from([("m0",), ("m0", "m1")]))
def test_the_access_reader_agrees_with_msgspec(text, ids):
    import msgspec

    from pmemtrace.model.case import Mapping, decode_accesses

    maps = [Mapping(id=i, start=A, length=M) for i in ids]
    got = core.scan_accesses(msgspec.Raw(text), ids)
    os.environ[core.PURE_ENV] = "1"  # msgspec's typed decoding alone
    try:
        want = _as_tuples(decode_accesses(msgspec.Raw(text), maps))
    except (msgspec.ValidationError, msgspec.DecodeError):
        want = None
    finally:
        del os.environ[core.PURE_ENV]
    if got is not None:
        assert want is not None, text
        assert _as_tuples(got) == want
        assert _as_tuples(got[:]) == want and len(got) == len(want)


def test_the_access_reader_reads_plain_cases():
    import msgspec

    text = b'[{"op":"read","mapping":"m0","offset":4096},{"mapping":"m0","op":"write"},{"op":"read","length":3}]'
    got = core.scan_accesses(msgspec.Raw(text), ("m0",))
    assert got is not None
    assert _as_tuples(got) == [
        ("read", "m0", 4096, 0, None, False),
        ("write", "m0", 0, 0, None, False),
        ("read", "m0", 0, 3, None, False),
    ]
    # a mapping must be named when there are two; other ops are msgspec's
    assert core.scan_accesses(msgspec.Raw(b'[{"op":"read"}]'), ("m0", "m1")) is None
    assert core.scan_accesses(msgspec.Raw(b'[{"op":"gup","mapping":"m0"}]'), ("m0",)) is None


@pytest.mark.parametrize("value", ["1", "yes", "TRUE"])
def test_one_switch_turns_off_both_compiled_paths(monkeypatch, value):
    from pmemtrace.live import fasttext

    monkeypatch.setenv("PMEMTRACE_PURE_PYTHON", value)
    assert not core.available() and not fasttext.available()
    monkeypatch.setenv("PMEMTRACE_PURE_PYTHON", "0")
    assert core.available() and fasttext.available()
