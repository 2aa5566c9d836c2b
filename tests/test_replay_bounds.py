"""replay's bounds on what it reads: a huge line is never held whole, a
recording header must name a kernel release."""

import json
import tracemalloc

from pmemtrace.cli import main
from pmemtrace.live.parse import MAX_LINE, ParseStats, read_records

LINE = (
    "          worker-4242    [001] .....   100.000002: dax_pmd_fault_done: dev 259:0 ino 0xc shared WRITE "
    "address 0x7f0000000000 vm_start 0x7f0000000000 vm_end 0x7f1000000000 pgoff 0x0 max_pgoff 0xffff NOPAGE\n"
)


def test_a_huge_line_is_skipped_as_unparsed_in_bounded_memory(tmp_path, capsys):
    p = tmp_path / "t.txt"
    with open(p, "w") as f:
        f.write(LINE * 3)
        f.write("x" * (8 * MAX_LINE) + "\n")  # 8 MiB without a newline
        f.write(LINE * 2)
        f.write("y" * (3 * MAX_LINE))  # and a last one without its newline
    tracemalloc.start()
    st = ParseStats()
    _fmt, st, recs = read_records(str(p), st)
    n = sum(1 for _ in recs)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == 5 and st.events == 5
    assert st.bad == 2 and st.lines == 7
    assert st.first_bad[0] == 4 and "longer than" in st.first_bad[1]
    assert peak < 4 * MAX_LINE * 4  # a few blocks, not the 8 MiB line
    assert main(["replay", str(p), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["input"]["unparsed"] == 2 and d["totals"]["pmd"] == 5


def test_a_huge_recording_line_is_corrupt_data(tmp_path, capsys):
    p = tmp_path / "r.jsonl"
    p.write_text('{"pmemtrace_record": 1, "kernel": "6.12"}\n' + '{"name": "' + "x" * (2 * MAX_LINE) + '"}\n')
    assert main(["replay", str(p)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 2: longer than" in err


def test_header_kernel_must_be_a_release(tmp_path, capsys):
    for bad in ('"abc"', "12", '""', '"6"', '"6.12 ; rm"'):
        p = tmp_path / "r.jsonl"
        p.write_text(json.dumps({"pmemtrace_record": 1, "backend": "tracefs"})[:-1] + f', "kernel": {bad}}}\n')
        assert main(["replay", str(p)]) == 3, bad
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("is not a kernel release" in err or "not a release string" in err)
    p.write_text('{"pmemtrace_record": 1, "kernel": "6.12.95+deb12-amd64", "backend": "tracefs"}\n')
    assert main(["replay", str(p)]) == 0
    capsys.readouterr()
