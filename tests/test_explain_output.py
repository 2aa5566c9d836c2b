"""explain's JSON outputs (issue 12): compact --json, --indent N, --jsonl carry
the same content, built by the fast paths (Prediction.iter_json, the access
fast path of parse_case, msgspec) and checked against the careful ones."""

import io
import json
import random

import pytest
from test_cli_model import run

from pmemtrace.cli.explain import example_names, load_example, write_json, write_jsonl
from pmemtrace.errors import CaseError
from pmemtrace.model import explain, load_case, parse_case
from pmemtrace.model.case import _parse_access, _parse_access_careful


def _careful_json(pred):
    """The results as the per-access objects build them (the reference)."""
    return [r.to_json() for r in pred.results]


@pytest.mark.parametrize("name", example_names())
def test_fast_results_equal_careful_ones(name):
    pred = explain(load_example(name))
    fast = list(pred.iter_json())
    assert fast == _careful_json(pred)


def _scenario_case(name):
    from pmemtrace.workload.dryrun import dry_case
    from pmemtrace.workload.scenario import load_embedded

    return parse_case(dry_case(load_embedded(name)))


def _all_cases():
    from pmemtrace.workload.scenario import embedded_names

    return [("example:" + n, load_example, n) for n in example_names()] + [
        ("scenario:" + n, _scenario_case, n) for n in embedded_names()
    ]


@pytest.mark.parametrize("label,load,name", _all_cases(), ids=lambda x: x if isinstance(x, str) else "")
def test_outputs_carry_the_same_content(label, load, name):
    pred = explain(load(name))
    ref = pred.to_json()
    ref["results"] = _careful_json(pred)
    compact, indented, lines = io.BytesIO(), io.BytesIO(), io.BytesIO()
    write_json(pred, compact)
    write_json(pred, indented, indent=1)
    write_jsonl(pred, lines)
    assert json.loads(compact.getvalue()) == ref
    assert b"\n" not in compact.getvalue().rstrip(b"\n")
    # --indent N is the stdlib encoder's bytes (indent 1 = pmemtrace before issue 12)
    assert indented.getvalue() == (json.dumps(ref, indent=1) + "\n").encode()
    rows = [json.loads(x) for x in lines.getvalue().splitlines()]
    assert rows[0] == {k: ref[k] for k in ("profile", "kernel", "profile_detail")}
    assert rows[1:-1] == ref["results"]
    assert rows[-1] == {"summary": ref["summary"]}


def test_cli_options():
    p = run("explain", "--example", "dax-pmd", "--json")
    q = run("explain", "--example", "dax-pmd", "--indent", "2")
    r = run("explain", "--example", "dax-pmd", "--jsonl")
    assert p.returncode == q.returncode == r.returncode == 0
    assert json.loads(p.stdout) == json.loads(q.stdout)
    assert q.stdout == json.dumps(json.loads(p.stdout), indent=2) + "\n"
    assert len(r.stdout.splitlines()) == len(json.loads(p.stdout)["results"]) + 2
    bad = run("explain", "--example", "dax-pmd", "--jsonl", "--json")
    assert bad.returncode != 0 and len(bad.stderr.splitlines()) <= 3 and "Traceback" not in bad.stderr


def test_access_fast_path_matches_careful_path():
    rnd = random.Random(12)
    ids = {"m0": None, "m1": None}
    for i in range(3000):
        d = {"op": rnd.choice(["read", "write", "read", "gup"])}
        if rnd.random() < 0.9:
            d["mapping"] = rnd.choice(["m0", "m1", "m2"])
        for k in ("offset", "length"):
            if rnd.random() < 0.8:
                d[k] = rnd.choice([0, 4096, rnd.randrange(1 << 40), "2M", "0x1000", -1, True, 1.5])
        for k in ("write", "longterm", "fast", "populate"):
            if rnd.random() < 0.1:
                d[k] = rnd.choice([True, False, 1, "yes"])
        if rnd.random() < 0.05:
            d["Offset"] = 1
        try:
            ref = _parse_access_careful(dict(d), i, ids)
        except CaseError as e:
            with pytest.raises(CaseError) as got:
                _parse_access(dict(d), i, ids)
            assert str(got.value) == str(e)
            continue
        assert _parse_access(dict(d), i, ids) == ref, d
    # the single-mapping default
    assert _parse_access({"op": "read"}, 0, {"m0": None}, "m0").mapping == "m0"


def test_load_case_bad_json(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{"version": 1,,}')
    with pytest.raises(CaseError, match="not valid JSON: Expecting property name"):
        load_case(str(p))
    p.write_bytes(b'{"version": 1, "x": "\xff"}')
    with pytest.raises(CaseError, match="not valid JSON"):
        load_case(str(p))


def test_load_case_big_integers_take_the_stdlib_path(tmp_path):
    # a 65-bit number: msgspec refuses it, json reads it, the case check names it
    case = json.loads(json.dumps(load_example("dax-pmd").raw))
    case["accesses"][0]["offset"] = 1 << 65
    p = tmp_path / "c.json"
    p.write_text(json.dumps(case))
    c = load_case(str(p))
    assert c.accesses[0].offset == 1 << 65


def _random_case(seed, n):
    rnd = random.Random(seed)
    G, M = 1 << 30, 1 << 20
    extents, phys = [], 0
    for i in range(40):
        ln = rnd.choice([2, 4, 6, 64]) * M
        extents.append(
            {
                "logical": sum(e["length"] for e in extents),
                "physical": phys + (M if i % 7 == 3 else 0),
                "length": ln,
                "unwritten": i % 5 == 0,
            }
        )
        phys += ln + 2 * M
    size = sum(e["length"] for e in extents)
    maps = [
        {"id": "a", "start": 0x7F0000000000, "length": size},
        {"id": "b", "start": 0x7F4000000000 + 0x1000, "length": size // 2, "offset": 0x1000},
        {"id": "p", "start": 0x7F8000000000, "length": size, "shared": False},
    ]
    acc = []
    for _ in range(n):
        m = rnd.choice(maps)
        op = rnd.choice(["read", "write", "read", "write", "gup", "madvise"])
        a = {"op": op, "mapping": m["id"], "offset": rnd.randrange(m["length"] // 4096) * 4096}
        if op == "madvise":
            a["advice"] = rnd.choice(["dontneed", "nohugepage", "hugepage"])
            a["length"] = rnd.choice([4096, 2 * M])
        acc.append(a)
    return {
        "version": 1,
        "kernel": rnd.choice(["6.1", "6.12", "7.2"]),
        "device": {"mode": "fsdax", "size": phys + G, "data_start": 4 * G},
        "file": {"size": size, "extents": extents},
        "mappings": maps,
        "accesses": acc,
    }


@pytest.mark.parametrize("seed", range(6))
def test_random_cases_fast_output_equals_careful(seed):
    from pmemtrace.model.engine import _Aggregate

    pred = explain(parse_case(_random_case(seed, 3000)))
    ref = pred.to_json()
    ref["results"] = _careful_json(pred)
    agg = _Aggregate()
    for rec in pred._records:
        agg.add(rec)
    ref["summary"] = agg.result(pred.counters, pred.mapping_errors)
    compact = io.BytesIO()
    write_json(pred, compact)
    got = json.loads(compact.getvalue())
    assert got == ref
    assert list(got["summary"]["events"]) == list(ref["summary"]["events"])  # first-seen order too
    assert json.dumps(got["summary"]) == json.dumps(ref["summary"])
