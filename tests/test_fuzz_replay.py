"""Fuzz: traces for ``pmemtrace replay`` (see tests/fuzzkit.py).

Inputs: trace_pipe and trace-cmd report text whose fs_dax lines have tokens
replaced (unknown flag names, malformed hex, numbers of thousands of
digits, junk), JSONL recordings whose records have values of the wrong type
or shape, and either of them gzip/xz-compressed, truncated, corrupted, or
plain text named .gz/.xz; plus the ``--kernel`` and ``--pid`` options.
"""

import gzip
import json
import lzma

from fuzzkit import check, fuzz_settings, run_cli
from hypothesis import given
from hypothesis import strategies as st
from test_replay import TRACE_61, TRACE_618, TRACE_CMD

TEXT_LINES = [line for t in (TRACE_61, TRACE_618, TRACE_CMD) for line in t.splitlines()]

_huge = st.integers(4000, 6000).map(lambda n: "9" * n)
tokens = st.one_of(
    st.sampled_from(
        [
            "0x",
            "0xZZ",
            "0x" + "f" * 40,
            "-1",
            "BOGUS_FLAG",
            "WRITE|NOPE",
            "|",
            "||",
            "",
            "(null)",
            "shared",
            "private",
            "dev",
            "259:",
            ":0",
            "ino",
            "address",
            "\x00",
            "\udc80",
            "9" * 30,
        ]
    ),
    _huge,
    _huge.map(lambda d: "0x" + d),
    st.text(max_size=12),
)


@st.composite
def trace_texts(draw):
    lines = draw(st.lists(st.sampled_from(TEXT_LINES), min_size=1, max_size=12))
    out = []
    for line in lines:
        words = line.split(" ")
        for _ in range(draw(st.integers(0, 3))):
            i = draw(st.integers(0, len(words) - 1))
            words[i] = draw(tokens)
        out.append(" ".join(words))
    if draw(st.booleans()):
        out.insert(draw(st.integers(0, len(out))), draw(st.text(max_size=80)))
    return "\n".join(out) + "\n"


EVENT = {
    "name": "dax_pmd_fault_done",
    "ts": 1.5,
    "pid": 412,
    "tid": 412,
    "comm": "mmap1",
    "cpu": 1,
    "fields": {
        "dev": (259 << 20),
        "ino": 67,
        "vm_flags": 8,
        "flags": 0x29,
        "address": 0x7F2000201000,
        "vm_start": 0x7F2000000000,
        "vm_end": 0x7F2000400000,
        "pgoff": 0x201,
        "max_pgoff": 0x20000,
        "result": 0x800,
    },
}
HEADER = {"pmemtrace_record": 1, "kernel": "6.12.95+deb12-amd64", "backend": "tracefs"}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(1 << 80), 1 << 80),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(["\udc80", "0x10", "9" * 40]),
)
values = st.recursive(
    scalars,
    lambda k: st.one_of(st.lists(k, max_size=3), st.dictionaries(st.text(max_size=6), k, max_size=3)),
    max_leaves=8,
)


@st.composite
def jsonl_texts(draw):
    header = dict(HEADER)
    if draw(st.booleans()):
        header[draw(st.sampled_from(["kernel", "pmemtrace_record", "backend"]))] = draw(values)
    records = []
    for _ in range(draw(st.integers(0, 6))):
        r = json.loads(json.dumps(EVENT))
        kind = draw(st.integers(0, 5))
        if kind == 0:
            r[draw(st.sampled_from(sorted(r)))] = draw(values)
        elif kind == 1:
            r["fields"][draw(st.sampled_from(sorted(r["fields"])))] = draw(values)
        elif kind == 2:
            r = draw(values)
        elif kind == 3:
            r = {"type": draw(st.sampled_from(["lost", "end"])), "count": draw(values), "lost": draw(values)}
        elif kind == 4:
            r["name"] = draw(
                st.sampled_from(["dax_pte_fault_done", "dax_pmd_load_hole", "dax_writeback_one", "nonsense", ""])
            )
        records.append(r)
    lines = [json.dumps(header)] + [json.dumps(r) for r in records]
    if draw(st.booleans()):
        lines.insert(
            draw(st.integers(1, len(lines))),
            draw(st.sampled_from(["{", "[1,2", '{"name": ' + "9" * 5000 + "}", "[" * 100000, "null", "12", '"x"'])),
        )
    return "\n".join(lines) + "\n"


def _pack(data: bytes, how: str, cut: int) -> (bytes, str):
    if how == "gz":
        return gzip.compress(data), ".gz"
    if how == "xz":
        return lzma.compress(data), ".xz"
    if how == "gz-truncated":
        z = gzip.compress(data)
        return z[: max(1, cut % len(z))], ".gz"
    if how == "xz-truncated":
        z = lzma.compress(data)
        return z[: max(1, cut % len(z))], ".xz"
    if how == "gz-corrupt":
        z = bytearray(gzip.compress(data))
        z[cut % len(z)] ^= 0xFF
        return bytes(z), ".gz"
    if how == "plain-named-gz":
        return data, ".gz"
    if how == "plain-named-xz":
        return data, ".xz"
    return data, ".txt"


PACKING = st.sampled_from(
    ["plain", "plain", "gz", "xz", "gz-truncated", "xz-truncated", "gz-corrupt", "plain-named-gz", "plain-named-xz"]
)
OPTS = st.lists(
    st.sampled_from([["--json"], ["--events"], ["--no-reasons"], ["--pid", "412"], ["--kernel", "6.1"]]), max_size=2
).map(lambda ls: [a for x in ls for a in x])


def _replay(tmp_path_factory, text, how, cut, opts):
    data, ext = _pack(text.encode("utf-8", "surrogateescape" if False else "surrogatepass"), how, cut)
    path = tmp_path_factory.mktemp("trace") / ("t" + ext)
    path.write_bytes(data)
    o = check(run_cli(["replay", str(path), *opts]))
    if how in ("gz-truncated", "xz-truncated", "gz-corrupt", "plain-named-gz", "plain-named-xz"):
        assert o.status in (0, 2, 3), o
    return o


@fuzz_settings(250)
@given(text=trace_texts(), how=PACKING, cut=st.integers(0, 1 << 20), opts=OPTS)
def test_trace_text(tmp_path_factory, text, how, cut, opts):
    _replay(tmp_path_factory, text, how, cut, opts)


@fuzz_settings(250)
@given(text=jsonl_texts(), how=PACKING, cut=st.integers(0, 1 << 20), opts=OPTS)
def test_jsonl(tmp_path_factory, text, how, cut, opts):
    _replay(tmp_path_factory, text, how, cut, opts)


@fuzz_settings(100)
@given(data=st.binary(max_size=300), opts=OPTS)
def test_raw_bytes(tmp_path_factory, data, opts):
    path = tmp_path_factory.mktemp("trace") / "t.txt"
    path.write_bytes(data)
    check(run_cli(["replay", str(path), *opts]))


# -- the examples ----------------------------------------------------------


def test_kernel_abc_rejected(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text(TRACE_61)
    o = check(run_cli(["replay", str(p), "--kernel", "abc"]), {2})
    assert "--kernel" in o.err


def test_truncated_gz_is_incomplete_data(tmp_path):
    p = tmp_path / "t.gz"
    p.write_bytes(gzip.compress((TRACE_61 * 200).encode())[:300])
    o = check(run_cli(["replay", str(p)]), {3})
    assert "truncated" in o.err or "ends early" in o.err


def test_plain_text_named_gz(tmp_path):
    p = tmp_path / "t.gz"
    p.write_text(TRACE_61)
    o = check(run_cli(["replay", str(p)]), {3})
    assert "rename" in o.err


def test_corrupt_xz(tmp_path):
    z = bytearray(lzma.compress((TRACE_61 * 50).encode()))
    z[len(z) // 2] ^= 0xFF
    p = tmp_path / "t.xz"
    p.write_bytes(bytes(z))
    check(run_cli(["replay", str(p)]), {3})


def test_jsonl_non_object_record(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text(json.dumps(HEADER) + "\n[1, 2]\n")
    o = check(run_cli(["replay", str(p)]), {3})
    assert "line 2" in o.err


def test_jsonl_field_of_wrong_type(tmp_path):
    ev = json.loads(json.dumps(EVENT))
    ev["fields"]["address"] = "not a number"
    p = tmp_path / "r.jsonl"
    p.write_text(json.dumps(HEADER) + "\n" + json.dumps(ev) + "\n")
    o = check(run_cli(["replay", str(p)]), {3})
    assert "line 2" in o.err


def test_dev_zero_trace():
    o = check(run_cli(["replay", "/dev/zero"]), {2})
    assert "regular file" in o.err
