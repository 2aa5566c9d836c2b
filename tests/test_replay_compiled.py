"""replay's compiled path for text traces (pmemtrace._replayfast, driven by
pmemtrace.live.fasttext) against the pure-Python path it stands in for:
the same table, JSON, reasons, counts and unparsed lines on every fixture
trace, on traces of every embedded example and scenario (with malformed
lines mixed in), on generated traces (hypothesis), and at block boundaries."""

import itertools
import json
import os
import random

import pytest
from fuzzkit import check, fuzz_settings, run_cli
from hypothesis import given
from hypothesis import strategies as st
from test_replay import TRACE_61, TRACE_618, TRACE_CMD
from test_replay_fast import FAULT_NAMES, _all_cases, _lines, _mutations

from pmemtrace.errors import PmemtraceError
from pmemtrace.events import VM_FAULT, format_event
from pmemtrace.live import fasttext
from pmemtrace.live.attrcache import CachedAttributor
from pmemtrace.live.session import replay
from pmemtrace.model import explain

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE_TEXTS = [
    os.path.join(ROOT, "fixtures", "trace-dat", n) for n in ("6.1-fsdax.report.txt", "7.2-fsdax.report.txt")
]


@pytest.fixture(autouse=True)
def _compiled_path_built():
    # the unit tier runs where scripts/install-deps.sh built the module
    # (PMEMTRACE_REQUIRE_ENGINE=1): its absence is a failure, not a skip
    assert fasttext._replayfast is not None, "pmemtrace._replayfast is not built: pip install -e . with a C compiler"


def _outcome(path, pure, **kw):
    old = os.environ.get(fasttext.PURE_ENV)
    if pure:
        os.environ[fasttext.PURE_ENV] = "1"
    else:
        os.environ.pop(fasttext.PURE_ENV, None)
    try:
        agg, src = replay(str(path), **kw)
    finally:
        if old is None:
            os.environ.pop(fasttext.PURE_ENV, None)
        else:
            os.environ[fasttext.PURE_ENV] = old
    assert isinstance(src, fasttext.TextSource) != pure  # the path asked for ran
    st = src.stats
    att = agg.attributor.to_json() if isinstance(agg.attributor, CachedAttributor) else None
    return {
        "json": agg.to_json(),
        "json_text": json.dumps(agg.to_json()),  # the order of keys too (a row's reasons: first seen first)
        "table": agg.render(),
        "wide": agg.render(wide=True),
        "stats": st.to_json(),
        "first_bad": st.first_bad,
        "lost_unknown": st.lost_unknown,
        "fmt": src.fmt,
        "attribution": att,
        "folded": agg.folded_events,
    }


def _outcome_or_error(path, pure, **kw):
    try:
        return _outcome(path, pure, **kw)
    except PmemtraceError as e:  # bad input: the same error either way
        return {"error": (type(e).__name__, str(e))}


def assert_same(path, **kw):
    pure = _outcome_or_error(path, True, **kw)
    fast = _outcome_or_error(path, False, **kw)
    for k in pure:
        assert fast[k] == pure[k], k
    return pure


@pytest.mark.parametrize("path", FIXTURE_TEXTS, ids=os.path.basename)
@pytest.mark.parametrize(
    "kw", [{}, {"reasons": False}, {"kernel": "6.1"}, {"pid": 236}, {"max_rows": 1}, {"verify_reuse": True}]
)
def test_fixture_traces(path, kw):
    out = assert_same(path, **kw)
    assert out["stats"]["events"] > 500


@pytest.mark.parametrize("text", [TRACE_61, TRACE_618, TRACE_CMD], ids=["6.1", "6.18", "trace-cmd"])
def test_the_replay_tests_traces(tmp_path, text):
    p = tmp_path / "t.txt"
    p.write_text(text)
    assert_same(p)


_EVENTS: dict = {}


def _events(case):
    """The model's events of *case*, the first 80 (a few scenarios fault
    hundreds of thousands of times; each fallback is a model run in the
    pure path), computed once."""
    key = id(case)
    if key not in _EVENTS:
        _EVENTS[key] = (case, list(itertools.islice(explain(case).events(), 80)))
    return _EVENTS[key][1]


def _case_trace(case, rnd, mutate):
    out = []
    for line in _lines(_events(case), rnd):
        if mutate:
            out.extend(_mutations(line, rnd))
        else:
            out.append(line)
    return "".join(out)


@pytest.mark.parametrize("case", _all_cases(), ids=lambda c: c.name or "case")
def test_every_example_and_scenario(tmp_path, case):
    """Each fsdax example and scenario as trace text (in every prefix style),
    once clean and three times over with malformed copies of its lines."""
    rnd = random.Random(case.name)
    p = tmp_path / "t.txt"
    p.write_text(_case_trace(case, rnd, False) + _case_trace(case, rnd, True) * 3)
    out = assert_same(p, kernel=case.kernel)
    assert "error" in out if not _events(case) else out["stats"]["events"] > 0
    assert_same(p, kernel=case.kernel, max_rows=2)


def test_the_compiled_path_takes_the_plain_lines(tmp_path):
    """Not a path that hands everything to Python: the benchmark's lines are
    counted in C (the views see each fallback only)."""
    fl = dict(dev=259 << 20, ino=12, vm_flags=8, flags=0x255)
    lines = []
    for i in range(200):
        f = dict(fl, address=0x7F0000000000 + (i << 21), vm_start=0x7F0000000000, vm_end=0x7F1000000000)
        f.update(pgoff=i * 512, max_pgoff=0xFFFFFF, result=0x800 if i % 4 == 3 else 0x100)
        for name in ("dax_pmd_fault", "dax_pmd_fault_done"):
            lines.append(f"w-7 [001] ..... {1 + i / 1e3:.6f}: {name}: {format_event(name, f)}\n")
    p = tmp_path / "t.txt"
    p.write_text("".join(lines))
    seen = []
    real = fasttext.TextReplay._py_line
    try:
        fasttext.TextReplay._py_line = lambda self, line: (seen.append(line), real(self, line))[1]
        assert_same(p)
    finally:
        fasttext.TextReplay._py_line = real
    # the first line (a new row) and the fallbacks until the row keeps its
    # five pieces of evidence (the model predicts a PMD: 'unexplained'); the
    # other 45 are in one situation, reused in C
    out = _outcome(p, False)
    assert out["json"]["rows"][0]["fallback_reasons"] == {"unexplained": 50}
    assert len(seen) == 1 + 5
    assert out["attribution"] == {"reused": 49, "computed": 1, "not_reusable": 0}


def _fallback_trace(rnd, odd):
    """Fallbacks in a few situations, each 2 MiB block first faulted at PTE
    level a few times (the entry state the reuse key holds), some of those
    lines in a form only Python parses (*odd*: '0X' hex), on two files."""
    lines = []
    ts = 1.0
    for _ in range(300):
        ino = rnd.choice([12, 13])
        vs = 0x7F0000000000 if ino == 12 else 0x7E0000200000
        blk = rnd.randrange(64)
        base = vs + (blk << 21)
        evs = []
        for _ in range(rnd.randrange(3)):
            a = base + rnd.randrange(4) * 4096
            f = dict(dev=_DEV, ino=ino, vm_flags=8, address=a, pgoff=(a - vs) >> 12, flags=rnd.choice([0x1, 0x255]))
            evs.append(("dax_pte_fault_done", dict(f, result=0x100)))
        f = dict(dev=_DEV, ino=ino, vm_flags=8, address=base, vm_start=vs, vm_end=vs + (64 << 21))
        f.update(pgoff=(base - vs) >> 12, max_pgoff=rnd.choice([0x7FF, 0x10000]), flags=rnd.choice([0x1, 0x255]))
        evs.append(("dax_pmd_fault", dict(f, result=0)))
        evs.append(("dax_pmd_fault_done", dict(f, result=rnd.choice([0x800, 0x800, 0x800, 0x100]))))
        for name, f in evs:
            ts += 1e-6
            line = f"w-7 [001] ..... {ts:.6f}: {name}: {format_event(name, f)}"
            if odd and name == "dax_pte_fault_done" and rnd.random() < 0.3:
                line = line.replace(" pgoff 0x", " pgoff 0X")
            lines.append(line + "\n")
    return "".join(lines)


@pytest.mark.parametrize("odd", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_fallbacks_reused_in_c(tmp_path, monkeypatch, seed, odd):
    """Fallbacks counted by reuse on the C side: the same rows, reasons (in
    their order), evidence and reuse counts as the pure path, whose reuse
    key holds the earlier faults of the block - some of them lines only
    Python parses, which the C side must still count in (rf_note)."""
    p = tmp_path / "t.txt"
    p.write_text(_fallback_trace(random.Random(seed), odd))
    back: list = []
    add = fasttext._Counting._add
    monkeypatch.setattr(fasttext._Counting, "_add", lambda self, rec: (back.append(rec[0]), add(self, rec))[1])
    out = assert_same(p)
    att = out["attribution"]
    assert att["reused"] > 100 and att["computed"] > 20
    done = back.count("dax_pmd_fault_done")
    assert done < att["computed"] + 15  # the reused ones stayed in C (but a row's first of a reason)
    if odd:
        assert back.count("dax_pte_fault_done") > 20  # lines C did not parse, in the keys all the same
    assert_same(p, pid=7, max_rows=1)
    assert_same(p, kernel="6.1")


def test_a_history_entry_c_cannot_hold_ends_reuse_on_its_file(tmp_path, monkeypatch):
    """A fault-done event Python observed with a value no u64 holds (a
    .dat field read as negative; here one made so on its way to rf_note):
    the C side cannot know that file's entry state any more, so every later
    fallback on it is attributed in Python, the output unchanged."""
    f = dict(dev=_DEV, ino=12, vm_flags=8, address=0x7F0000000000, vm_start=0x7F0000000000)
    f.update(vm_end=0x7F0010000000, pgoff=0, max_pgoff=0x7FF, flags=0x255, result=0x800)
    lines = []
    for i in range(40):
        g = dict(f, address=f["address"] + (i << 21), pgoff=i << 9)
        if i == 20:  # a line only Python parses ('0X'): it goes to rf_note
            pte = format_event("dax_pte_fault_done", dict(g, result=0x100)).replace(" pgoff 0x", " pgoff 0X")
            lines.append(f"w-7 [001] ..... 1.{i:06d}: dax_pte_fault_done: {pte}\n")
        lines.append(f"w-7 [001] ..... 1.{i:06d}: dax_pmd_fault_done: {format_event('dax_pmd_fault_done', g)}\n")
    p = tmp_path / "t.txt"
    p.write_text("".join(lines))
    back: list = []
    add, note = fasttext._Counting._add, fasttext._Counting._note
    monkeypatch.setattr(fasttext._Counting, "_add", lambda self, rec: (back.append(rec[0]), add(self, rec))[1])
    monkeypatch.setattr(fasttext._Counting, "_note", lambda self, f, kind: note(self, dict(f, pgoff=-1), kind))
    out = assert_same(p)
    assert out["stats"]["unparsed"] == 0
    assert out["attribution"]["reused"] >= 30
    # the first five (the row's evidence), and the 20 fallbacks from the odd line on
    assert back.count("dax_pmd_fault_done") == 5 + 20
    monkeypatch.setattr(fasttext._Counting, "_note", note)
    back.clear()
    assert_same(p)
    # the odd line in the history: reuse goes on, but for the fallback
    # after it (a new situation: a PTE entry in its block)
    assert back.count("dax_pmd_fault_done") == 5 + 1


def test_block_boundaries_and_a_last_line_without_newline(tmp_path, monkeypatch):
    rnd = random.Random(3)
    text = "".join(_case_trace(c, rnd, True) for c in _all_cases()[:4]).rstrip("\n")
    p = tmp_path / "t.txt"
    p.write_text(text)
    want = assert_same(p)
    for block in (1, 7, 64, 333):
        monkeypatch.setattr(fasttext, "BLOCK", block)
        assert _outcome(p, False) == want


def test_carriage_returns_and_long_lines_go_the_pure_way(tmp_path, monkeypatch):
    rnd = random.Random(4)
    case = _all_cases()[0]
    clean = _case_trace(case, rnd, False)
    half = len(clean) // 2
    p = tmp_path / "t.txt"
    p.write_text(clean[:half] + "x\ry\r\n" + clean[half:] + clean.replace("\n", "\r\n"))
    assert_same(p)
    # a line longer than the compiled path holds: the rest of the file goes the pure way
    p.write_text(clean + "w-1 [000] 1.0: " + "z" * 1000 + "\n" + clean)
    want = assert_same(p)
    monkeypatch.setattr(fasttext, "MAX_LINE", 300)
    monkeypatch.setattr(fasttext, "BLOCK", 100)
    switched = []
    real = fasttext.TextReplay._rest
    monkeypatch.setattr(fasttext.TextReplay, "_rest", lambda self, f, off: (switched.append(off), real(self, f, off)))
    assert _outcome(p, False) == want
    assert switched == [len(clean.encode())]


def test_non_ascii_and_odd_bytes(tmp_path):
    rnd = random.Random(5)
    case = _all_cases()[1]
    text = _case_trace(case, rnd, False)
    lines = text.splitlines(keepends=True)
    odd = []
    for i, line in enumerate(lines):
        if i % 3 == 0:
            line = line.replace("-", "\u00e9-", 1)  # a comm with a non-ASCII letter
        elif i % 3 == 1:
            line = line.replace(" ", "\t", 2)
        odd.append(line)
    p = tmp_path / "t.txt"
    p.write_bytes("".join(odd).encode() + b"w-1 [000] ..... 1.0: dax_pte_fault: \xff\xfe\n" + text.encode())
    assert_same(p)


def test_without_the_compiled_module(tmp_path, monkeypatch):
    p = tmp_path / "t.txt"
    p.write_text(TRACE_618)
    want = _outcome(p, True)
    monkeypatch.setattr(fasttext, "_replayfast", None)
    assert not fasttext.available()
    agg, src = replay(str(p))
    assert not isinstance(src, fasttext.TextSource)
    assert agg.to_json() == want["json"]


# -- generated traces -------------------------------------------------------

_DEV = 259 << 20
_MAPS = [
    (0x7F0000000000, 0x7F0000800000, 12),
    (0x7F0000600000, 0x7F0000E00000, 12),
    (0x7E0000000000, 0x7E0000400000, 13),
]
_RESULTS = [0x100, 0x100, VM_FAULT["FALLBACK"], VM_FAULT["SIGBUS"], VM_FAULT["FALLBACK"] | VM_FAULT["SIGBUS"], 0]


#: tokens the kernel never prints, each a rule where the C tokenizer must
#: agree with Python's (int(x, 0), isdigit, str.split) or hand the line over
_ODD_TOKENS = [
    "",
    "0x",
    "0X1",
    "-1",
    "+5",
    "00",
    "007",
    "0o7",
    "0b1",
    "1_0",
    "0x_1",
    "0x" + "0" * 20 + "1",
    "18446744073709551615",
    "18446744073709551616",
    "0x" + "f" * 16,
    "0x" + "f" * 17,
    "9" * 25,
    "WRITE|NOPE",
    "WRITE||USER",
    "0x255",
    "\u00e9",
    "[001]",
    "[]",
    "(7)",
    "1.5:",
    ".5:",
    "dev",
    "address",
    "a\tb",
]


@st.composite
def traces(draw):
    lines = []
    for i in range(draw(st.integers(1, 60))):
        vs, ve, ino = draw(st.sampled_from(_MAPS))
        addr = vs + draw(st.integers(0, (ve - vs) // 4096 + 8)) * 4096
        name = draw(st.sampled_from(FAULT_NAMES))
        f = dict(dev=_DEV, ino=ino, vm_flags=draw(st.sampled_from([0, 8])), address=addr)
        f.update(pgoff=(addr - vs) >> 12, flags=draw(st.sampled_from([0, 0x1, 0x255, 0x29])))
        f["result"] = draw(st.sampled_from(_RESULTS)) if name.endswith("done") else 0
        if "pmd" in name:
            f.update(vm_start=vs, vm_end=ve, max_pgoff=draw(st.sampled_from([0x7FF, 0x10000])))
            f["address"] &= ~((2 << 20) - 1)
            f["pgoff"] = (f["address"] - vs) >> 12
        pid = draw(st.sampled_from([7, 8, 1234567890]))
        line = f"w-{pid} [001] ..... {1 + i / 1e6:.6f}: {name}: {format_event(name, f)}"
        kind = draw(st.integers(0, 9))
        if kind == 0:
            words = line.split(" ")
            j = draw(st.integers(0, len(words) - 1))
            words[j] = draw(st.sampled_from(_ODD_TOKENS))
            line = " ".join(words)
        elif kind == 1:
            line = draw(st.sampled_from(["", "# tracer: nop", "CPU:1 [LOST 3 EVENTS]", "x\ry"]))
        lines.append(line)
    return "\n".join(lines) + draw(st.sampled_from(["\n", ""]))


@fuzz_settings(60)
@given(text=traces(), pid=st.sampled_from([None, 7]), reasons=st.booleans(), rows=st.sampled_from([None, 1, 3]))
def test_generated_traces(tmp_path_factory, text, pid, reasons, rows):
    p = tmp_path_factory.mktemp("gen") / "t.txt"
    p.write_text(text)
    assert_same(p, pid=pid, reasons=reasons, max_rows=rows)


def test_bad_input_is_a_clear_error(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(b"\x00\x01garbage\xff\n" * 20)
    o = check(run_cli(["replay", str(p)]))
    assert o.status == 2 and "not a pmemtrace recording" in o.err
    p.write_text(TRACE_618 + "w-1 [000] ..... 9.0: dax_pte_fault_done: dev 259:0 ino zz\n")
    o = check(run_cli(["replay", str(p)]))
    assert o.status == 0 and "unparsed fs_dax lines" in o.err


@pytest.mark.parametrize("pure", [True, False])
def test_a_trace_without_events_still_counts_its_lines_and_losses(tmp_path, pure):
    """(The pure path's source was started twice; of a file with no event
    the second start counted nothing, not even its [LOST] markers.)"""
    p = tmp_path / "t.txt"
    p.write_text("CPU:1 [LOST 3 EVENTS]\nw-1 [000] ..... 1.0: dax_pte_fault_done: dev 259:0 ino zz\n")
    out = _outcome(p, pure)
    assert out["json"]["totals"]["lost"] == 3
    assert (out["stats"]["lines"], out["stats"]["lost"], out["stats"]["unparsed"]) == (2, 3, 1)


# -- trace-cmd .dat ---------------------------------------------------------

DAT_DIR = os.path.join(ROOT, "fixtures", "trace-dat")
DATS = sorted(os.path.join(DAT_DIR, n) for n in os.listdir(DAT_DIR) if n.endswith(".dat"))


def _dat_outcome(path, pure, **kw):
    """As _outcome, for a .dat: the compiled path may decline a file (then
    the pure path runs); *pure* False asks that it did not."""
    try:
        return _outcome(path, pure, **kw)
    except AssertionError:
        if pure:
            raise
        return "declined"


@pytest.mark.parametrize("path", DATS, ids=os.path.basename)
@pytest.mark.parametrize(
    "kw", [{}, {"reasons": False}, {"kernel": "6.1"}, {"pid": 236}, {"max_rows": 1}, {"verify_reuse": True}]
)
def test_dat_fixtures(path, kw):
    pure = _outcome(path, True, **kw)
    fast = _outcome(path, False, **kw)  # fails if the compiled path declined the file
    assert fast == pure
    assert pure["fmt"] == "trace-cmd.dat" and pure["stats"]["events"] > 500


def _synthesized(tmp_path, copies):
    """The v6 fixture's pages *copies* times over (benchmarks/bench_dat.py)."""
    import sys

    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        from bench_dat import synthesize
    finally:
        sys.path.pop(0)
    out = tmp_path / f"x{copies}.dat"
    synthesize(os.path.join(DAT_DIR, "7.2-fsdax.v6.dat"), str(out), copies)
    return out


def test_dat_of_many_pages(tmp_path):
    p = _synthesized(tmp_path, 6)
    pure = _outcome(p, True)
    assert _outcome(p, False) == pure
    assert pure["stats"]["events"] == 6 * 568


def test_dat_load_holes_are_counted_in_c(tmp_path, monkeypatch):
    """dax_pmd_load_hole records on a mapping whose row exists stay on the C
    side (its huge_zero counter), the same counts as the pure path's."""
    p = _synthesized(tmp_path, 6)
    pure = _outcome(p, True)
    back: list = []
    add = fasttext._Counting._add
    monkeypatch.setattr(fasttext._Counting, "_add", lambda self, rec: (back.append(rec[0]), add(self, rec))[1])
    assert _outcome(p, False) == pure
    holes = sum(r["huge_zero"] for r in pure["json"]["rows"])
    assert holes >= 6 * 4  # the fixture has load holes in every copy
    assert back.count("dax_pmd_load_hole") < holes / 6  # only those that make a row came back


def test_dat_whose_cpu_goes_back_in_time_takes_the_pure_path(tmp_path):
    """Pages repeated without shifting their timestamps: the pure path's
    window merge gives its own order, so the compiled path declines."""
    p = _synthesized(tmp_path, 1)
    data = bytearray(p.read_bytes())
    from pmemtrace.live.tracedat import open_dat

    d, mm = open_dat(str(p))
    mm.close()
    c = max(d.cpus, key=lambda c: c.size)
    ps = d.page_size
    pages = data[c.offset : c.offset + c.size]
    data[c.offset : c.offset + c.size] = pages[ps:] + pages[:ps]  # the first page moved last
    p.write_bytes(bytes(data))
    assert _dat_outcome(p, False) == "declined"
    pure = _outcome(p, True)
    # declined past records it had counted (the moved page is its CPU's
    # last): the pure path's replay into new views, the same output
    os.environ.pop(fasttext.PURE_ENV, None)
    agg, src = replay(str(p))
    assert src.fmt == "trace-cmd.dat" and not isinstance(src, fasttext.TextSource)
    assert json.dumps(agg.to_json()) == pure["json_text"]
    assert agg.attributor.to_json() == pure["attribution"]


def test_dat_is_read_a_piece_per_cpu_at_a_time(tmp_path, monkeypatch):
    """The compiled .dat path asks for a CPU's next piece only when the
    merge has used up the one before: no more pieces alive at once than
    CPUs with data, however long the file (the bounded-memory claim)."""
    import weakref

    from pmemtrace.live import tracedat

    class Piece(bytearray):  # a piece the test can watch die
        pass

    alive: list = []
    most = [0, 0]  # pieces alive at once, pieces read
    real = tracedat.cpu_pages

    def pieces(dat, mm, c):
        for piece in real(dat, mm, c):
            p = Piece(piece)
            alive.append(weakref.ref(p))
            alive[:] = [r for r in alive if r() is not None]
            most[0] = max(most[0], len(alive))
            most[1] += 1
            yield p

    monkeypatch.setattr(tracedat, "cpu_pages", pieces)
    p = _synthesized(tmp_path, 40)
    pure = _outcome(p, True)
    most[:] = [0, 0]
    assert _outcome(p, False) == pure
    from pmemtrace.live.tracedat import open_dat

    d, mm = open_dat(str(p))
    mm.close()
    cpus = sum(1 for c in d.cpus if c.size)
    assert most[1] > 10 * cpus  # many pieces, each CPU's read in turn
    assert most[0] <= cpus + 1  # (the one just read beside the ones held)


@fuzz_settings(40)
@given(edits=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=6))
def test_damaged_dat_pages_same_as_the_pure_path(tmp_path_factory, edits):
    """Bytes of the v6 fixture's CPU data changed: both paths print the same,
    or fail with the same error (the compiled path declines what it finds odd)."""
    from pmemtrace.live.tracedat import open_dat

    src = os.path.join(DAT_DIR, "7.2-fsdax.v6.dat")
    d, mm = open_dat(src)
    mm.close()
    data = bytearray(open(src, "rb").read())
    spans = [(c.offset, c.size) for c in d.cpus if c.size]
    for where, value in edits:
        off, size = spans[where % len(spans)]
        data[off + (where >> 1) % size] = value
    p = tmp_path_factory.mktemp("dat") / "d.dat"
    p.write_bytes(bytes(data))
    pure = _outcome_or_error(p, True)
    fast = _dat_outcome(p, False) if "error" not in pure else _outcome_or_error(p, False)
    assert fast in ("declined", pure)
