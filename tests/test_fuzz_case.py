"""Fuzz: case files for ``pmemtrace explain`` (see tests/fuzzkit.py).

Inputs: the embedded example cases with one value replaced by an arbitrary
JSON value (huge and negative integers, numeric strings of thousands of
digits, lone surrogates, booleans, deep nesting...), raw bytes (not UTF-8,
truncated JSON), and the ``--kernel`` option with arbitrary text.
"""

import json
import os
from importlib import resources

import pytest
from fuzzkit import check, fuzz_settings, run_cli, run_subprocess
from hypothesis import given
from hypothesis import strategies as st

EXAMPLES = {
    e.name[:-5]: json.loads(e.read_text())
    for e in resources.files("pmemtrace.model.examples").iterdir()
    if e.name.endswith(".json")
}
NAMES = sorted(EXAMPLES)

_huge_digits = st.integers(4000, 6000).map(lambda n: "9" * n)
numbers = st.one_of(
    st.integers(),
    st.integers(-(1 << 70), 1 << 70),
    st.sampled_from(
        [
            0,
            -1,
            1,
            4095,
            4096,
            1 << 21,
            (1 << 21) - 1,
            1 << 30,
            1 << 40,
            1 << 47,
            1 << 50,
            1 << 57,
            1 << 62,
            (1 << 63) - 1,
            1 << 63,
            (1 << 64) - 1,
            1 << 64,
        ]
    ),
    st.floats(allow_nan=False, allow_infinity=False),
)
numeric_strings = st.one_of(
    st.sampled_from(
        [
            "0x0",
            "0x1000",
            "2M",
            "1G",
            "1T",
            "1P",
            "512T",
            "99999P",
            "-0x1000",
            "0x",
            "",
            " ",
            "4K",
            "1e9",
            "0x" + "f" * 40,
            "NaN",
        ]
    ),
    _huge_digits,
    _huge_digits.map(lambda s: "0x" + s),
    st.integers(0, 1 << 64).map(hex),
)
texts = st.one_of(
    st.text(max_size=20), st.sampled_from(["\udc80", "a\ud800b", "m0", "x", "6.12", "abc", "99999999999.1"])
)
scalars = st.one_of(st.none(), st.booleans(), numbers, numeric_strings, texts)
json_values = st.recursive(
    scalars, lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(texts, kids, max_size=4)), max_leaves=12
)


def deep(n):
    return "[" * n + "]" * n


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated_cases(draw):
    name = draw(st.sampled_from(NAMES))
    case = json.loads(json.dumps(EXAMPLES[name]))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(case))[1:]
        path = draw(st.sampled_from(paths))
        parent = case
        for p in path[:-1]:
            parent = parent[p]
        if draw(st.booleans()) and isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return case


OPTIONS = st.lists(
    st.sampled_from([["--json"], ["--events"], ["--kernel", "6.1"], ["--kernel", "7.2"]]), max_size=2
).map(lambda ls: [a for x in ls for a in x])


@fuzz_settings(300)
@given(case=mutated_cases(), opts=OPTIONS)
def test_mutated_cases(tmp_path_factory, case, opts):
    path = tmp_path_factory.mktemp("case") / "case.json"
    path.write_text(json.dumps(case))  # ensure_ascii: lone surrogates become \udXXX escapes
    o = check(run_cli(["explain", str(path), *opts]))
    if o.status == 2:
        assert "case:" in o.err, o


@fuzz_settings(150)
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.sampled_from(NAMES)
        .flatmap(
            lambda n: st.tuples(st.just(json.dumps(EXAMPLES[n]).encode()), st.integers(0, 2000), st.binary(max_size=8))
        )
        .map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]),
        st.integers(10, 200000).map(lambda n: deep(n).encode()),
        _huge_digits.map(lambda d: ('{"version": 1, "kernel": "6.' + d + '"}').encode()),
        _huge_digits.map(lambda d: ('{"version": ' + d + "}").encode()),
    )
)
def test_raw_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("case") / "case.json"
    path.write_bytes(data)
    o = check(run_cli(["explain", str(path)]))
    assert o.status in (0, 2), o


@fuzz_settings(150)
@given(kernel=st.one_of(texts, numeric_strings, _huge_digits.map(lambda d: "6." + d)), name=st.sampled_from(NAMES))
def test_kernel_option(kernel, name):
    if kernel.startswith("-"):
        kernel = " " + kernel  # an option, not a value, for argparse
    o = check(run_cli(["explain", "--example", name, "--kernel", kernel]))
    if not kernel.strip():
        assert o.status == 2, o  # --kernel "" is not ignored


# -- the examples, one by one --------------------------------------------


def _write(tmp_path, obj):
    p = tmp_path / "c.json"
    p.write_text(json.dumps(obj))
    return str(p)


def test_version_true_rejected(tmp_path):
    case = dict(EXAMPLES["dax-pmd"], version=True)
    o = check(run_cli(["explain", _write(tmp_path, case)]), {2})
    assert "version" in o.err


def test_non_string_id_rejected(tmp_path):
    case = json.loads(json.dumps(EXAMPLES["dax-pmd"]))
    case["mappings"][0]["id"] = 7
    check(run_cli(["explain", _write(tmp_path, case)]), {2})


def test_lone_surrogate_id_table_output(tmp_path):
    case = json.loads(json.dumps(EXAMPLES["dax-pmd"]))
    old = case["mappings"][0]["id"]
    case["mappings"][0]["id"] = "m\udc80"
    for a in case["accesses"]:
        if a.get("mapping") == old:
            a["mapping"] = "m\udc80"
    o = check(run_cli(["explain", _write(tmp_path, case)]), {2})
    assert "surrogate" in o.err


def test_dev_zero_case_is_bounded():
    o = check(run_subprocess(["explain", "/dev/zero"], timeout=30), {2})
    assert "not a regular file" in o.err


def test_huge_integer_case(tmp_path):
    case = json.loads(json.dumps(EXAMPLES["dax-pmd"]))
    case["mappings"][0]["length"] = 12345
    p = tmp_path / "c.json"
    p.write_text(json.dumps(case).replace("12345", "9" * 5000))
    o = check(run_cli(["explain", str(p)]), {2})
    assert "too many digits" in o.err


def test_deep_nesting_subprocess(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(deep(1_000_000))
    check(run_subprocess(["explain", str(p)], timeout=30), {2})


def test_empty_kernel_option():
    o = check(run_cli(["explain", "--example", "dax-pmd", "--kernel", ""]), {2})
    assert "kernel" in o.err


def test_o_direct_partner_file_or_a_clear_error(tmp_path):
    """The GUP partner: GUP_MAX written bytes opened O_DIRECT, or (a
    directory that cannot take O_DIRECT, or none) a one-line usage error
    with nothing left behind."""
    from pmemtrace.errors import UsageError
    from pmemtrace.fuzz.execute import GUP_MAX, _open_partner

    with pytest.raises(UsageError, match=r"--dio-dir .*: cannot use a file there with O_DIRECT"):
        _open_partner(str(tmp_path / "missing"))
    try:
        fd, path = _open_partner(str(tmp_path))
    except UsageError as exc:  # a filesystem without O_DIRECT (tmpfs before 6.6)
        assert "O_DIRECT" in str(exc) and os.listdir(tmp_path) == []
        return
    try:
        assert os.fstat(fd).st_size == GUP_MAX and os.path.dirname(path) == str(tmp_path)
    finally:
        os.close(fd)
        os.unlink(path)
