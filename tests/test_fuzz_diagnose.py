"""Fuzz: sysfs/procfs fixture trees for ``pmemtrace diagnose`` (see
tests/fuzzkit.py).  Each input rewrites up to three files of a recorded or
hand-made fixture tree with arbitrary bytes: NUL bytes, not UTF-8, numbers of
thousands of digits, truncated or doubled content, empty files."""

import os
import shutil

import pytest
from fuzzkit import check, fuzz_settings, run_cli
from hypothesis import given
from hypothesis import strategies as st

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TREES = {
    "recorded": os.path.join(ROOT, "fixtures", "6.12.95+deb12-amd64", "fsdax-dev-2M"),
    "devdax": os.path.join(ROOT, "fixtures", "6.12.95+deb12-amd64", "devdax-2M"),
    "handmade": os.path.join(ROOT, "fixtures", "handmade", "e820-whole-xfs"),
}


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    out = {}
    for name, src in TREES.items():
        dst = tmp_path_factory.mktemp(name) / "t"
        shutil.copytree(src, dst, symlinks=True)
        files = sorted(
            os.path.join(d, f)
            for d, _, fs in os.walk(dst)
            for f in fs
            if not os.path.islink(os.path.join(d, f)) and os.path.getsize(os.path.join(d, f)) < 1 << 20
        )
        out[name] = (str(dst), files)
    return out


contents = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"",
            b"\0",
            b"1\0",
            b"\0\0\0\n",
            b"\xff\xfe",
            b"-1\n",
            b"0x\n",
            b"nan\n",
            b"9" * 5000 + b"\n",
            b"0x" + b"f" * 5000 + b"\n",
            b"18446744073709551616\n",
        ]
    ),
)


@fuzz_settings(200)
@given(
    tree=st.sampled_from(sorted(TREES)),
    picks=st.lists(
        st.tuples(st.integers(0, 10**6), contents, st.sampled_from(["replace", "append", "truncate"])),
        min_size=1,
        max_size=3,
    ),
    opts=st.sampled_from([["--json"], [], ["--no-colour"]]),
)
def test_mutated_trees(trees, tree, picks, opts):
    root, files = trees[tree]
    saved = {}
    try:
        for idx, data, how in picks:
            path = files[idx % len(files)]
            if path not in saved:
                with open(path, "rb") as f:
                    saved[path] = f.read()
            old = saved[path]
            new = data if how == "replace" else old + data if how == "append" else old[: len(data)] + data
            with open(path, "wb") as f:
                f.write(new)
        argv = ["diagnose", "--sysfs-root", root + "/sys", "--procfs-root", root + "/proc", *opts]
        if tree == "handmade":
            argv += ["--pid", "4242"]
        check(run_cli(argv))
    finally:
        for path, data in saved.items():
            with open(path, "wb") as f:
                f.write(data)


def test_nul_bytes_in_every_file(tmp_path):
    dst = tmp_path / "t"
    shutil.copytree(TREES["recorded"], dst, symlinks=True)
    for d, _, fs in os.walk(dst):
        for f in fs:
            p = os.path.join(d, f)
            if not os.path.islink(p):
                with open(p, "ab") as fh:
                    fh.write(b"\0\0")
    check(run_cli(["diagnose", "--sysfs-root", str(dst / "sys"), "--procfs-root", str(dst / "proc"), "--json"]))
