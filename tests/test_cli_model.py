"""The CLI in model mode, run as a user runs it: a subprocess of the
installed package, checking stdout/stderr/exit status (no traceback on bad
input).  ``explain --json`` of every embedded example is compared byte for
byte with tests/expected/<example>.json (regenerate, with a diff, by
``scripts/update-expected.py``)."""

import json
import os
import subprocess
import sys

import pytest

from pmemtrace.cli.explain import example_names

EXPECTED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "expected")


def run(*args, input=None):
    return subprocess.run(
        [sys.executable, "-m", "pmemtrace", *args], capture_output=True, text=True, input=input, timeout=120
    )


def test_explain_example_table():
    p = run("explain", "--example", "dax-pmd")
    assert p.returncode == 0, p.stderr
    assert "profile 6.12" in p.stdout
    assert "faults: 10 PMD, 0 PTE" in p.stdout


def test_explain_json_contract():
    p = run("explain", "--example", "pmd-colour-mismatch", "--json")
    assert p.returncode == 0
    d = json.loads(p.stdout)
    assert d["profile"] == "6.12"
    r0 = d["results"][0]
    assert set(r0) >= {"access", "address", "outcome", "result", "reason", "events", "calls"}
    assert r0["reason"] == "pmd-colour-mismatch"
    assert [e["name"] for e in r0["events"]] == [
        "dax_pmd_fault",
        "dax_pmd_fault_done",
        "dax_pte_fault",
        "dax_pte_fault_done",
    ]
    assert r0["events"][1]["fields"]["result"] == 0x800
    assert d["summary"]["fallbacks"] == {"pmd-colour-mismatch": 2}


def test_explain_kernel_override():
    d = json.loads(run("explain", "--example", "aligned-shared", "--kernel", "6.1", "--json").stdout)
    assert d["profile"] == "6.1"
    assert d["results"][0]["calls"]["vmf_insert_pfn_pmd_prot"] == 1


def test_every_example_has_an_expected_outcome_file():
    names = example_names()
    assert "dax-pmd" in names and len(names) >= 20
    files = sorted(f[:-5] for f in os.listdir(EXPECTED) if f.endswith(".json"))
    assert files == names, "run scripts/update-expected.py and review its diff"


@pytest.mark.parametrize("name", example_names())
def test_example_output_is_the_reviewed_one(name):
    # the reviewed files are --indent 1 (readable diffs; the pre-msgspec bytes)
    p = run("explain", "--example", name, "--json", "--indent", "1")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    with open(os.path.join(EXPECTED, name + ".json")) as f:
        want = f.read()
    # byte for byte; on an intended model change: scripts/update-expected.py
    assert p.stdout == want, f"{name}: explain --json differs from tests/expected/{name}.json"
    # the default compact output (msgspec) carries the same document
    compact = run("explain", "--example", name, "--json")
    assert compact.returncode == 0 and "\n" not in compact.stdout.rstrip("\n")
    assert json.loads(compact.stdout) == json.loads(want)


@pytest.mark.parametrize(
    "case,key",
    [
        ({"version": 2}, "version"),
        ({"version": 1}, "device"),
        ({"version": 1, "device": {"mode": "nvme"}}, "device.mode"),
        ({"version": 1, "device": {"mode": "fsdax", "align": "3M"}}, "device.align"),
        ({"version": 1, "device": {"mode": "fsdax"}, "file": {"size": "16M"}}, "mappings"),
        ({"version": 1, "device": {"mode": "fsdax"}, "file": {"size": "lots"}}, "file.size"),
        (
            {
                "version": 1,
                "device": {"mode": "fsdax"},
                "file": {"size": "4M", "extents": [{"logical": 0, "physical": 1, "length": "4M"}]},
            },
            "file.extents[0].physical",
        ),
        (
            {
                "version": 1,
                "device": {"mode": "fsdax"},
                "file": {"size": "4M"},
                "mappings": [{"id": "a", "start": "0x7f0000000000", "length": "4M"}],
                "accesses": [{"mapping": "b", "op": "read"}],
            },
            "accesses[0].mapping",
        ),
        (
            {
                "version": 1,
                "device": {"mode": "fsdax"},
                "file": {"size": "4M"},
                "mappings": [{"id": "a", "start": "0x7f0000000000", "length": "4M"}],
                "accesses": [{"op": "touch"}],
            },
            "accesses[0].op",
        ),
        ({"version": 1, "kernel": "bookworm", "device": {"mode": "fsdax"}}, "kernel"),
        ({"version": 1, "device": {"mode": "devdax", "align": "2M"}, "mappings": []}, "device.size"),
    ],
)
def test_malformed_case_one_line_exit_2(tmp_path, case, key):
    f = tmp_path / "case.json"
    f.write_text(json.dumps(case))
    p = run("explain", str(f))
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert f"case: {key}:" in lines[0]


def test_not_json_and_missing_file(tmp_path):
    f = tmp_path / "x.json"
    f.write_text("{not json")
    p = run("explain", str(f))
    assert p.returncode == 2 and "not valid JSON" in p.stderr and len(p.stderr.splitlines()) == 1
    p = run("explain", str(tmp_path / "nope.json"))
    assert p.returncode == 2 and "no such case file" in p.stderr


def test_unknown_example():
    p = run("explain", "--example", "nope")
    assert p.returncode == 2 and "--list-examples" in p.stderr


def test_model_namespace_json():
    p = run(
        "model",
        "namespace",
        "--size",
        "16G",
        "--start",
        "0x100000000",
        "--mode",
        "fsdax",
        "--map",
        "dev",
        "--align",
        "2M",
        "--json",
    )
    d = json.loads(p.stdout)
    assert d["data_offset"] == 258 << 20 and d["data_size"] == 16126 << 20
    p = run("model", "namespace", "--size", "1G", "--start", "4G", "--align", "1G", "--json")
    assert p.returncode == 1 and "error" in json.loads(p.stdout)


def test_model_namespace_bad_size():
    p = run("model", "namespace", "--size", "big", "--start", "4G")
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1


def test_reasons_lists_every_code_with_citation():
    d = json.loads(run("reasons", "--json").stdout)
    from pmemtrace.model.reasons import REASONS

    assert [x["code"] for x in d] == list(REASONS)
    assert all(x["citation"] and x["remedy"] for x in d)
    p = run("reasons", "pfn-unaligned")
    assert "dax_iomap_direct_access" in p.stdout


def test_cli_never_imports_bcc():
    code = (
        "import sys; sys.modules['bcc'] = None\n"
        "from pmemtrace.cli import main\n"
        "sys.exit(main(['explain', '--example', 'dax-pmd', '--json', '--indent', '1']))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    with open(os.path.join(EXPECTED, "dax-pmd.json")) as f:
        assert p.stdout == f.read()


def test_every_reason_code_has_an_example_that_produces_it():
    from pmemtrace.cli.explain import load_example
    from pmemtrace.model import explain
    from pmemtrace.model.reasons import REASONS

    seen = set()
    for name in example_names():
        s = explain(load_example(name)).summary()
        seen |= set(s["fallbacks"]) | set(s["mapping_errors"].values())
        for r in explain(load_example(name)).results:
            if r.reason:
                seen.add(r.reason)
    assert set(REASONS) <= seen, sorted(set(REASONS) - seen)


def test_verbosity_flags_leave_stdout_alone():
    with open(os.path.join(EXPECTED, "dax-pmd.json")) as f:
        want = f.read()
    for flags in (["-q"], ["-qq"], ["-v"], ["-vv"]):
        p = run(*flags, "explain", "--example", "dax-pmd", "--json", "--indent", "1")
        assert p.returncode == 0 and p.stdout == want and p.stderr == "", (flags, p.stderr)


def test_library_logging_follows_v_and_q(capsys):
    import logging

    from pmemtrace.cli import log_level, setup_logging

    log = logging.getLogger("pmemtrace.test")
    try:
        for (v, q), shown in {
            (0, 0): ["info", "warning"],
            (1, 0): ["debug", "info", "warning"],
            (0, 1): ["warning"],
            (0, 2): [],
        }.items():
            setup_logging(log_level(v, q))
            log.debug("debug")
            log.info("info")
            log.warning("warning")
            err = capsys.readouterr().err.splitlines()
            assert [line.rsplit(": ", 1)[1] for line in err] == shown, (v, q, err)
            assert all(line.startswith("pmemtrace: ") for line in err)
    finally:
        setup_logging(logging.WARNING)


def test_doctests_of_the_typed_core():
    import doctest

    import pmemtrace.cli
    import pmemtrace.events
    import pmemtrace.model.geometry
    import pmemtrace.model.profiles
    import pmemtrace.units

    for mod in (pmemtrace.cli, pmemtrace.events, pmemtrace.model.geometry, pmemtrace.model.profiles, pmemtrace.units):
        res = doctest.testmod(mod)
        assert res.failed == 0 and res.attempted > 0, mod.__name__
