"""replay's fast paths (issue 12), each checked against the careful one it
stands in for: the fault-line tokenizer against LINE_RE + the print-fmt
regexes, reused attributions against the model run for every fallback
(--verify-reuse), and the table's human sizes."""

import random

import pytest

from pmemtrace.cli import main
from pmemtrace.cli.explain import example_names, load_example
from pmemtrace.events import format_event
from pmemtrace.live.attrcache import CachedAttributor
from pmemtrace.live.attribute import Attributor
from pmemtrace.live.parse import LINE_RE, ParseStats, iter_trace_records, parse_fs_dax_text, tokenize_fault_line
from pmemtrace.live.views import Aggregator, Row, human_size
from pmemtrace.model import explain, parse_case
from pmemtrace.workload.dryrun import dry_case
from pmemtrace.workload.scenario import embedded_names, load_embedded


def careful(line):
    m = LINE_RE.match(line)
    if not m:
        return None
    fields = parse_fs_dax_text(m.group("event"), m.group("text"))
    if fields is None:
        return None
    return (
        m.group("event"),
        fields,
        float(m.group("ts")),
        int(m.group("pid")),
        m.group("comm").strip(),
        int(m.group("cpu")),
    )


def _model_events(case):
    return list(explain(case).events())


def _all_cases():
    cases = [load_example(n) for n in example_names()]
    cases += [parse_case(dry_case(load_embedded(n))) for n in embedded_names()]
    return [c for c in cases if c.device.mode == "fsdax"]


FAULT_NAMES = ("dax_pmd_fault", "dax_pmd_fault_done", "dax_pte_fault", "dax_pte_fault_done")

PREFIXES = [
    "{comm}-{pid} [00{cpu}] ..... {ts:.6f}: ",  # trace_pipe
    "          {comm}-{pid}    [00{cpu}] d..1. {ts:.6f}: ",
    "{comm}-{pid} ( {pid}) [00{cpu}] .... {ts:.6f}: ",  # tgid column, a space inside
    "{comm}-{pid} ({pid}) [00{cpu}] .... {ts:.6f}: ",
    "  {comm}-{pid} [00{cpu}] {ts:.6f}: ",  # trace-cmd report
    "{comm}-{pid} [00{cpu}] {ts:.6f}: fs_dax:",  # with the system
]


def _lines(events, rnd):
    for i, e in enumerate(events):
        comm = rnd.choice(["w", "fio", "a-b", "kworker/0:1", "x y", "my-1", ""])
        pre = rnd.choice(PREFIXES).format(
            comm=comm, pid=rnd.randrange(1, 99999), cpu=rnd.randrange(8), ts=100 + i / 1e6
        )
        yield pre + f"{e.name}: {format_event(e.name, e.fields)}\n"


def _mutations(line, rnd):
    yield line
    yield line.replace(" ino ", " ino  ")
    yield line.rstrip("\n") + " junk\n"
    yield line.replace("0x", "0X", 1)
    yield line.replace("shared", "sharde")
    yield line.replace("address", "addr")
    i = rnd.randrange(len(line))
    yield line[:i] + line[i + 1 :]
    yield line[:i]


def test_tokenizer_gives_what_the_careful_parser_gives():
    rnd = random.Random(12)
    n_fast = 0
    for case in _all_cases():
        for line in _lines(_model_events(case), rnd):
            for variant in _mutations(line, rnd):
                ref = careful(variant)
                got = tokenize_fault_line(variant)
                if got is not None:
                    n_fast += 1
                    # laxer than the regexes only about runs of spaces and
                    # numbers no kernel prints (documented)
                    assert got == ref or (ref is None and ("  " in variant.split(": ", 2)[-1] or " 0X" in variant)), (
                        variant
                    )
                elif (
                    variant is line
                    and ref is not None
                    and ref[0] in FAULT_NAMES
                    and "fs_dax:" not in line
                    and " ( " not in line
                    and " " not in ref[4]
                ):
                    pytest.fail(f"the tokenizer declines a plain fault line: {line!r}")
    assert n_fast > 1000


def test_iter_trace_records_counts_like_before():
    lines = [
        "# tracer: nop\n",
        "CPU:1 [LOST 7 EVENTS]\n",
        "w-1 [000] ..... 1.000001: dax_pte_fault_done: dev 259:0 ino 0xc shared WRITE address 0x1000 "
        "pgoff 0x1 NOPAGE\n",
        "w-1 [000] ..... 1.000002: dax_pte_fault_done: dev 259:0 ino 0xc shared WRITE address zz\n",
        "w-1 [000] ..... 1.000003: sched_switch: prev=a\n",
    ]
    st = ParseStats()
    recs = list(iter_trace_records(lines, st))
    assert len(recs) == 1 and recs[0][1]["result"] == 0x100
    assert (st.lines, st.events, st.lost, st.bad, st.skipped) == (5, 1, 7, 1, 2)
    assert st.first_bad[0] == 4


@pytest.mark.parametrize("case", _all_cases(), ids=lambda c: c.name or "case")
def test_reused_attribution_equals_the_model(case):
    """Every fallback of every example and scenario, replayed three times
    over (other VMAs, same situations): reuse changes no reason and no
    evidence, and --verify-reuse finds no mismatch."""
    evs = _model_events(case)
    runs = []
    for cached in (False, True):
        att = Attributor(release=case.kernel)
        if cached:
            att = CachedAttributor(att, verify=False)
        agg = Aggregator(att)
        for rep in range(3):
            for rec in _shifted(evs, rep):
                agg.add_record(*rec)
        runs.append(agg.to_json())
    assert runs[0] == runs[1]
    verify = CachedAttributor(Attributor(release=case.kernel), verify=True)
    agg = Aggregator(verify)
    for rep in range(3):
        for rec in _shifted(evs, rep):
            agg.add_record(*rec)
    assert verify.mismatches == 0


def _shifted(evs, rep):
    """The events again in another mapping (and file) *rep* TiB on: the same situations."""
    for e in evs:
        f = dict(e.fields)
        for k in ("vm_start", "vm_end", "address"):
            if k in f:
                f[k] += rep << 40
        f["ino"] = f.get("ino", 0) + rep
        yield e.name, f, 1.0, 7, "w", 0


def test_verify_reuse_catches_a_wrong_reuse():
    case = load_example("pmd-colour-mismatch")
    evs = _model_events(case)
    att = CachedAttributor(Attributor(release=case.kernel), verify=True)
    agg = Aggregator(att)
    for rep in range(2):
        for rec in _shifted(evs, rep):
            agg.add_record(*rec)
    assert att.verified and att.mismatches == 0
    for k in att.cache:  # poison every cached answer
        att.cache[k] = ("vma-end", att.cache[k][1])
    for rec in _shifted(evs, 2):
        agg.add_record(*rec)
    assert att.mismatches and att.first_mismatch["reused"] == "vma-end"
    assert agg.totals()["fallback_reasons"] == {"pmd-colour-mismatch": 6}  # the model's answer is what counts


@pytest.mark.parametrize(
    "n,text",
    [
        (64 << 30, "64G"),
        (2 << 20, "2M"),
        (12 << 10, "12K"),
        (100, "100B"),
        ((1 << 30) + (512 << 20), "~1.5G"),
        (3 << 40, "3T"),
        ((64 << 30) + 4096, "~64G"),
    ],
)
def test_human_size(n, text):
    assert human_size(n) == text


def test_range_column_never_cuts(capsys, tmp_path):
    r = Row(1, "w", 259 << 20, 12, 0x7F0000000000, 0x7F0000000000 + (64 << 30))
    assert r.range() == "0x7f0000000000+64G"
    assert r.range(wide=True) == "0x7f0000000000-0x7f1000000000"
    p = tmp_path / "t.txt"
    fields = dict(
        dev=259 << 20,
        ino=12,
        vm_start=0x7F0000000000,
        vm_end=0x7F0000000000 + (64 << 30) + 4096,
        vm_flags=0x8,
        address=0x7F0000000000,
        pgoff=0,
        max_pgoff=1 << 30,
        flags=0x255,
        result=0x100,
    )
    p.write_text(
        f"averyveryverylongcomm-123456 [001] ..... 1.000001: dax_pmd_fault_done: "
        f"{format_event('dax_pmd_fault_done', fields)}\n"
    )
    for wide in (False, True):
        assert main(["replay", str(p)] + (["--wide"] if wide else [])) == 0
        out = capsys.readouterr().out
        row = out.splitlines()[1]
        assert "123456" in row
        assert ("0x7f0000000000-0x7f1000001000" if wide else "0x7f0000000000+~64G") in row
        assert ("averyveryverylongcomm" in row) == wide
