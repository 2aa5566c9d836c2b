"""Bounded work in the model gives the per-page results.

gup walks a huge mapping in one step (gup._huge_span), and zap, munmap and
invalidate visit only the slots in use (state._keys_in).  With those
shortcuts switched off the model is the plain per-page / per-2-MiB walk it
was before; on random cases built from every example the two give the
same prediction, byte for byte."""

import json
from importlib import resources

import pytest
from fuzzkit import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from pmemtrace.errors import CaseError
from pmemtrace.model import explain, gup, parse_case, state
from pmemtrace.model.state import AddressSpace, Vma

EXAMPLES = {
    e.name[:-5]: json.loads(e.read_text())
    for e in resources.files("pmemtrace.model.examples").iterdir()
    if e.name.endswith(".json")
}
K, M = 1 << 12, 1 << 20


def _per_range_keys(table, first, last):
    return [k for k in range(first, last + 1) if k in table]


def per_page(monkeypatch):
    monkeypatch.setattr(gup, "_huge_span", lambda sim, addr, write: None)
    monkeypatch.setattr(state, "_keys_in", _per_range_keys)


@st.composite
def cases(draw):
    name = draw(st.sampled_from(sorted(EXAMPLES)))
    case = json.loads(json.dumps(EXAMPLES[name]))
    ids = [m["id"] for m in case["mappings"]]
    accs = []
    for _ in range(draw(st.integers(1, 25))):
        op = draw(st.sampled_from(["read", "write", "gup", "gup", "madvise", "munmap", "mmap", "pwrite"]))
        a = {"op": op, "offset": draw(st.integers(0, 3 * 512).map(lambda p: p * K))}
        if op == "pwrite":
            if case["device"]["mode"] != "fsdax":
                continue
            a["length"] = draw(st.integers(1, 5 * M))
        else:
            a["mapping"] = draw(st.sampled_from(ids))
        if op in ("gup", "madvise"):
            a["length"] = draw(st.integers(0 if op == "madvise" else 1, 9 * M))
        if op == "gup":
            a["write"] = draw(st.booleans())
            a["longterm"] = draw(st.booleans())
            a["fast"] = draw(st.booleans())
            a["populate"] = draw(st.booleans())
        if op == "madvise":
            a["advice"] = draw(st.sampled_from(["nohugepage", "hugepage", "dontneed"]))
        accs.append(a)
    case["accesses"] = case.get("accesses", []) + accs
    case["kernel"] = draw(st.sampled_from([case.get("kernel") or "6.12", "6.1", "6.15", "7.2"]))
    return case


@fuzz_settings(150)
@given(case=cases())
def test_bounded_equals_per_page(case):
    try:
        c = parse_case(case)
    except CaseError:  # an invalid random combination: nothing to compare
        return
    fast = json.dumps(explain(c).to_json())
    with pytest.MonkeyPatch.context() as mp:
        per_page(mp)
        slow = json.dumps(explain(parse_case(case)).to_json())
    assert fast == slow


@fuzz_settings(200)
@given(
    spans=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 20)), max_size=30),
    probe=st.tuples(st.integers(0, 230), st.integers(0, 30)),
)
def test_overlaps_and_vmas_in(spans, probe):
    mm = AddressSpace()
    for s, n in spans:
        start, end = s * M, (s + n) * M
        if not any(v.start < end and v.end > start for v in mm.vmas):
            mm.add(Vma(start, end, 0, True, False, True, False, "m"))
    assert [v.start for v in mm.vmas] == sorted(v.start for v in mm.vmas)
    lo, hi = probe[0] * M, (probe[0] + probe[1]) * M
    linear = [v for v in mm.vmas if v.start < hi and v.end > lo]
    assert mm.overlaps(lo, hi) == bool(linear)
    assert mm.vmas_in(lo, hi) == linear


def test_keys_in_both_ways():
    table = dict.fromkeys((1, 5, 9, 1 << 40))
    assert state._keys_in(table, 0, 10) == [1, 5, 9]
    assert state._keys_in(table, 2, 1 << 41) == [5, 9, 1 << 40]
    assert state._keys_in(table, 6, 8) == []
