"""Fuzz: the arguments of every subcommand (see tests/fuzzkit.py).

Each input is a subcommand with options drawn from its own parser (so every
option is reached) and values drawn from numbers, nan/inf, negative and huge
pids, empty strings, missing directories and text.  The tests run as root on
this machine, so subcommands that act on the host (watch, check, run without
--dry-run, diagnose --observe, lab) always get one argument that must be
rejected while the command line is parsed: the property is then exit 2 and
a short message, before anything is touched."""

import argparse
import os

import pytest
from fuzzkit import check, fuzz_settings, run_cli, run_subprocess
from hypothesis import given
from hypothesis import strategies as st

from pmemtrace.cli import make_parser


def _subparsers():
    p = make_parser()
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            return a.choices
    raise AssertionError("no subcommands")


SUB = _subparsers()

#: options that act on the host whatever else is given: never drawn
HOST_ACTIONS = {"--reconfigure", "--allow-non-dax", "--observe", "--ebpf", "--prepare", "--force"}

values = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "-1",
            "0",
            "1",
            "nan",
            "inf",
            "-inf",
            "1e309",
            "999999999",
            "4194305",
            "9" * 5000,
            "abc",
            "6.1",
            "7.2",
            "6.12.95+deb12-amd64",
            "2M",
            "0x1000",
            "\udc80",
            "/nonexistent/dir/out.json",
            "out.json",
            "dax-pmd",
            "ndctl-dax-pmd",
            "fstests-generic-428",
            "x.json",
            "-",
            "/dev/zero",
        ]
    ),
    st.text(max_size=12).filter(lambda s: not s.startswith("-")),
    st.integers().map(str),
    st.floats().map(repr),
)


def _options(parser):
    out = []
    for a in parser._actions:
        if (
            not a.option_strings
            or a.option_strings[0] in ("-h", "--help")
            or any(o in HOST_ACTIONS for o in a.option_strings)
        ):
            continue
        out.append((a.option_strings[-1], a.nargs != 0))
    return out


def _positionals(parser):
    return [a for a in parser._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]


@st.composite
def argvs(draw, name, forced_bad=None):
    parser = SUB[name]
    argv = [name]
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if subs and (not forced_bad or draw(st.booleans())):
        sub = draw(st.sampled_from(sorted(subs[0].choices)))
        argv.append(sub)
        parser = subs[0].choices[sub]
    for a in _positionals(parser):
        if a.nargs in ("?", "*") and draw(st.booleans()):
            continue
        if a.nargs == argparse.REMAINDER:
            continue
        argv.append(draw(values.filter(lambda s: s != "-")))
    opts = _options(parser)
    for opt, takes in draw(st.lists(st.sampled_from(opts), max_size=4)) if opts else ():
        argv.append(opt)
        if takes:
            argv.append(draw(values))
    if forced_bad:
        bad = draw(st.sampled_from(forced_bad))
        argv[1:1] = bad
    return [a for a in argv if "\0" not in a]


# subcommands whose every path is safe to run: nothing on the host changes
SAFE = ["explain", "model", "reasons", "replay"]
# one argument each that argparse must reject (before any host action)
BAD = {
    "watch": [
        ["--pid", "-1"],
        ["--pid", "999999999999"],
        ["-i", "nan"],
        ["-i", "0"],
        ["-d", "inf"],
        ["--record", "/nonexistent/dir/r.jsonl"],
        ["--kernel", "abc"],
        ["--kernel", ""],
        ["--backend", "nope"],
        ["--buffer-mb", "x"],
    ],
    "run": [["--out", "/nonexistent/dir/c.json"], ["--kernel", "abc"], ["--kernel", ""], ["--bogus"]],
    "check": [["--kernel", "abc"], ["--kernel", ""], ["--bogus"]],
    "diagnose": [
        ["--pid", "0"],
        ["--pid", "-5"],
        ["--observe", "nan"],
        ["--svg", "/nonexistent/x.svg"],
        ["--op", "nope"],
    ],
    "lab": [["--bogus"], ["nope"]],
}


@pytest.mark.parametrize("name", SAFE)
def test_safe_subcommands(name, tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))

    @fuzz_settings(120)
    @given(argv=argvs(name))
    def inner(argv):
        check(run_cli(argv))

    inner()


@pytest.mark.parametrize("name", sorted(BAD))
def test_host_subcommands_reject_before_acting(name, tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))

    @fuzz_settings(60)
    @given(argv=argvs(name, BAD[name]))
    def inner(argv):
        check(run_cli(argv), {2})

    inner()


def test_run_dry_run(tmp_path_factory, monkeypatch):
    # --dry-run acts on nothing but --out: run in a scratch directory
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))

    @fuzz_settings(80)
    @given(argv=argvs("run", [["--dry-run"]]))
    def inner(argv):
        o = check(run_cli(argv))
        if o.status == 0 and "--out" in argv:
            out = argv[len(argv) - 1 - argv[::-1].index("--out") + 1]
            if os.path.isfile(out):
                from pmemtrace.cli._common import load_case_file

                load_case_file(out)  # what --dry-run writes, explain reads
                os.unlink(out)

    inner()


# -- the examples ----------------------------------------------------------


def test_reasons_empty_code():
    o = check(run_cli(["reasons", ""]), {2})
    assert "empty reason code" in o.err


def test_watch_pid_minus_one():
    o = check(run_cli(["watch", "--pid", "-1"]), {2})
    assert "process id" in o.err


def test_watch_interval_nan():
    check(run_cli(["watch", "-i", "nan"]), {2})


def test_watch_record_missing_dir():
    o = check(run_cli(["watch", "--record", "/nonexistent/dir/r.jsonl"]), {2})
    assert "does not exist" in o.err


def test_watch_pid_not_running():
    # a pid no process has (pid_max here is far below PID_MAX_LIMIT): refused, not traced silently
    o = check(run_cli(["watch", "--pid", "4194304", "-d", "0.1"]), {2, 4})
    assert "no such process" in o.err or o.status == 4


def test_run_out_missing_dir():
    o = check(run_cli(["run", "ndctl-dax-pmd", "--dry-run", "--out", "/nonexistent/dir/c.json"]), {2})
    assert "does not exist" in o.err


def test_run_dry_run_kernel_abc_rejected(tmp_path):
    out = tmp_path / "c.json"
    check(run_cli(["run", "--list"]))
    o = check(run_cli(["run", "ndctl-dax-pmd", "--dry-run", "--kernel", "abc", "--out", str(out)]), {2})
    assert not out.exists() and "kernel" in o.err


def test_usage_error_is_two_lines_subprocess():
    o = check(run_subprocess(["watch", "--interval", "nan", "--pid", "1"]), {2})
    assert len(o.err.strip().splitlines()) == 2 and "--help" in o.err
