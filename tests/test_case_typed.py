"""The typed decoding of cases (cli/_common._typed_case, model.case
decode_accesses) against the careful path it stands in for: on every
embedded example and on cases whose accesses are mutated at random, it
either declines (None: the careful path reads the file) or builds the very
Case the careful path builds.  It must never accept what the careful path
refuses."""

import json
from importlib import resources

import msgspec
from fuzzkit import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz_case import json_values

from pmemtrace.cli._common import _decode_json_checked, _typed_case, load_case_file
from pmemtrace.errors import PmemtraceError
from pmemtrace.model import explain, parse_case

EXAMPLES = {
    e.name[:-5]: json.loads(e.read_text())
    for e in resources.files("pmemtrace.model.examples").iterdir()
    if e.name.endswith(".json")
}
NAMES = sorted(EXAMPLES)


def _careful(data):
    """What load_case_file() returns without the typed path (or the error)."""
    try:
        return parse_case(_decode_json_checked(data, "case.json", "case"))
    except (PmemtraceError, TypeError, AttributeError, KeyError) as exc:
        return exc


def _same_case(a, b):
    assert [msgspec.structs.astuple(x) for x in a.accesses] == [msgspec.structs.astuple(x) for x in b.accesses]
    for k in ("kernel", "device", "file", "mappings", "thp_disable", "page_tables", "name", "notes"):
        assert getattr(a, k) == getattr(b, k), k


def test_examples_typed_where_plain(tmp_path):
    typed = n_plain = 0
    for name in NAMES:
        obj = EXAMPLES[name]
        data = json.dumps(obj).encode()
        case = _typed_case(data)
        plain = all(
            set(a) <= {"op", "mapping", "offset", "length"}
            and a["op"] in ("read", "write")
            and all(type(a.get(k, 0)) is int for k in ("offset", "length"))
            for a in obj["accesses"]
        )
        n_plain += plain
        if plain:
            assert case is not None, name  # the common shape takes the typed path
        if case is None:
            continue
        typed += 1
        careful = _careful(data)
        _same_case(case, careful)
        assert explain(case).to_json() == explain(careful).to_json(), name
        path = tmp_path / f"{name}.json"
        path.write_bytes(data)
        _same_case(load_case_file(str(path)), careful)
    # integer offsets, reads and writes only: typed; "2M" offsets, gup,
    # madvise...: the careful path
    assert typed == n_plain >= 5


def test_big_ints_and_flags():
    base = {"version": 1, "kernel": "6.12", "device": {"mode": "fsdax"}, "file": {"size": 1 << 30, "extents": []}}
    base["mappings"] = [{"id": "a", "start": 1 << 30, "length": 1 << 30}, {"id": "b", "start": 1 << 32, "length": 4096}]
    for acc, typed in (
        ({"op": "read", "mapping": "a", "offset": (1 << 63) - 1}, True),
        ({"op": "read", "mapping": "a", "offset": (1 << 64) - 1}, False),  # valid, but beyond int64
        ({"op": "read", "mapping": "a", "offset": 1 << 64}, False),
        ({"op": "read", "mapping": "a", "offset": -1}, False),
        ({"op": "read", "mapping": "a", "offset": 4096.0}, False),
        ({"op": "read", "mapping": "a", "offset": "0x1000"}, False),
        ({"op": "read", "offset": 0}, False),  # two mappings: mapping is required
        ({"op": "read", "mapping": "c"}, False),
        ({"op": "read", "mapping": "a", "advice": "dontneed"}, False),
        ({"op": "read", "mapping": "a", "Offset": 1}, False),  # a typo: the careful path names it
        ({"op": "write", "mapping": "b", "write": True, "fast": False}, True),
        ({"op": "write", "mapping": "b", "write": 1}, False),
        ({"op": "gup", "mapping": "b"}, False),
    ):
        data = json.dumps(dict(base, accesses=[acc])).encode()
        case = _typed_case(data)
        assert (case is not None) == typed, acc
        if case is not None:
            _same_case(case, _careful(data))


@st.composite
def mutated_accesses(draw):
    obj = json.loads(json.dumps(EXAMPLES[draw(st.sampled_from(NAMES))]))
    accs = obj["accesses"]
    for _ in range(draw(st.integers(0, 3))):
        if not accs:
            break
        a = accs[draw(st.integers(0, len(accs) - 1))]
        key = draw(st.sampled_from(["op", "mapping", "offset", "length", "write", "fast", "advice", "populate", "x"]))
        if draw(st.booleans()) and key in a:
            del a[key]
        else:
            a[key] = draw(st.one_of(json_values, st.sampled_from(["read", "write", "m0", "gup", True, 0, 4096])))
    if draw(st.booleans()):
        obj["extra"] = draw(json_values)  # a key outside the format: the careful path decides
    return obj


@fuzz_settings(300)
@given(obj=mutated_accesses())
def test_typed_never_accepts_more(obj):
    data = json.dumps(obj).encode()
    case = _typed_case(data)
    if case is not None:
        careful = _careful(data)
        assert not isinstance(careful, BaseException), careful
        _same_case(case, careful)
