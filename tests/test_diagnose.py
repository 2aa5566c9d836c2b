"""`pmemtrace diagnose` on hand-made fixture trees (what the lab cannot
produce), on the recorded lab fixtures of every kernel (fixtures/<release>/
<config>/), and on this host (no pmem here: findings, not tracebacks)."""

import glob
import json
import os
from typing import ClassVar

import pytest

from pmemtrace.cli import main
from pmemtrace.host import HostState, Roots, diagnose_file, diagnose_host, diagnose_pid
from pmemtrace.host.codes import HOST_CODES
from pmemtrace.host.svg import render_svg, terminal_strip
from pmemtrace.model.reasons import REASONS

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures")
HANDMADE = os.path.join(FIXTURES, "handmade")
M = 1 << 20
G = 1 << 30


def state(name, base=HANDMADE):
    t = os.path.join(base, name)
    return HostState(Roots(os.path.join(t, "sys"), os.path.join(t, "proc")))


def by_subject(findings):
    out = {}
    for f in findings:
        out.setdefault(f.subject, {})[f.code] = f
    return out


def fake_stat(dev, size, ino=12):
    return os.stat_result((0o100644, ino, dev, 1, 0, 0, size, 0, 0, 0))


def test_every_code_is_documented():
    for f in diagnose_host(state("e820-partition-2048")) + diagnose_host(state("cxl-hmem")):
        assert f.code in HOST_CODES or f.code in REASONS or f.code == "fs-dax-pmd-off", f.code


class TestHostVerdictsHandmade:
    def test_cxl_hmem(self):
        f = by_subject(diagnose_host(state("cxl-hmem")))
        assert f["dax0.0"]["devdax-pmd"].verdict == "pmd"
        assert "2 ranges" in f["dax0.0"]["devdax-pmd"].message
        assert "dax-no-namespace" in f["dax0.0"]
        assert f["dax1.0"]["dax-system-ram"].verdict == "no-dax"
        assert "daxctl reconfigure-device --mode=devdax dax1.0" in f["dax1.0"]["dax-system-ram"].remedy
        assert f["dax2.0"]["dax-range-unaligned"].verdict == "error"
        assert "devdax-pmd" not in f["dax2.0"]

    def test_namespace_data_start_1m_past_2m(self):
        f = by_subject(diagnose_host(state("nfit-unaligned-data")))
        ns = f["namespace0.0"]["ns-data-unaligned"]
        assert ns.verdict == "pte" and ns.details["reason"] == "pfn-unaligned"
        assert "1M past a 2 MiB boundary" in ns.message
        assert "--align=2M" in ns.remedy and "namespace0.0" in ns.remedy
        assert "pmd-capable" not in f["namespace0.0"]
        # the filesystem itself is fine: su=2m
        assert f["/mnt/pmem0"]["fs-geometry-2m"].verdict == "pmd"

    def test_partition_at_sector_2048(self):
        f = by_subject(diagnose_host(state("e820-partition-2048")))
        assert f["namespace0.0"]["pmd-capable"].verdict == "pmd"
        assert f["namespace0.0"]["memmap-ram"].details["memmap_bytes"] == 16 * M  # 64 B per 4 KiB of 1 GiB
        assert f["namespace1.0"]["ns-raw"].verdict == "no-dax"
        part = f["/mnt/pmem"]["partition-unaligned"]
        assert part.verdict == "pte" and "sector 2048" in part.message and "4096" in part.remedy
        geo = f["/mnt/pmem"]["fs-geometry-unaligned"]
        assert "stride=512" in geo.remedy
        assert "memmap-emulated" in f["cmdline"]

    def test_whole_device_xfs_is_clean(self):
        fs = diagnose_host(state("e820-whole-xfs"))
        bad = [f for f in fs if f.verdict in ("pte", "error", "no-dax")]
        assert bad == []
        assert by_subject(fs)["/mnt/pmem"]["fs-geometry-2m"].verdict == "pmd"


class TestFileChunksHandmade:
    EXTENTS: ClassVar[list[dict[str, int]]] = [
        dict(logical=0, physical=2 * M, length=8 * M),
        dict(logical=8 * M, physical=16 * M, length=2 * M, unwritten=True),
        # 10M..12M: hole
        dict(logical=12 * M, physical=32 * M, length=M),
        dict(logical=13 * M, physical=40 * M, length=M),
    ]

    def chunks(self, tree, dev, op="write", extents=None, size=14 * M):
        st = fake_stat(dev, size)
        s = diagnose_file(state(tree), "/mnt/pmem/data", op=op, fiemap=lambda p: extents or self.EXTENTS, st=st)
        return s, [(c.outcome, c.reason, c.layout) for c in s.chunks]

    def test_aligned_whole_device(self):
        s, ch = self.chunks("e820-whole-xfs", os.makedev(259, 0))
        assert ch[:4] == [("pmd", None, "aligned")] * 4
        assert ch[4] == ("pmd", None, "unwritten")
        assert ch[5][2] == "hole"
        assert ch[6] == ("pte", "extent-too-short", "fragmented")
        assert any(a.startswith("extent-too-short") for a in s.advice)
        assert s.details["data_start"] == 4 * G

    def test_read_of_unwritten_and_hole_is_huge_zero(self):
        _, ch = self.chunks("e820-whole-xfs", os.makedev(259, 0), op="read")
        assert ch[4][0] == "huge-zero" and ch[5][0] == "huge-zero"

    def test_partition_2048_makes_every_chunk_unaligned(self):
        s, ch = self.chunks("e820-partition-2048", os.makedev(259, 1))
        assert [c[2] for c in ch[:4]] == ["unaligned"] * 4
        assert [c[:2] for c in ch[:4]] == [("pte", "pfn-unaligned")] * 4
        assert any(f.code == "pfn-unaligned" and "sector 2048" in f.message for f in s.findings)
        assert s.details["data_start"] == 4 * G + M

    def test_namespace_data_unaligned(self):
        _s, ch = self.chunks("nfit-unaligned-data", os.makedev(259, 0))
        assert ("pmd", None, "aligned") not in ch
        assert ch[0] == ("pte", "pfn-unaligned", "unaligned")

    def test_file_size_inside_a_pmd(self):
        ext = [dict(logical=0, physical=2 * M, length=4 * M)]
        _, ch = self.chunks("e820-whole-xfs", os.makedev(259, 0), extents=ext, size=3 * M)
        assert ch == [("pmd", None, "aligned"), ("pte", "beyond-eof", "aligned")]

    def test_not_a_dax_mount(self):
        st = fake_stat(os.makedev(8, 1), 4 * M)
        s = diagnose_file(state("e820-whole-xfs"), "/etc/data", fiemap=lambda p: [], st=st)
        assert [f.code for f in s.findings] == ["mount-no-dax"] and s.chunks == []


class TestPidHandmade:
    def test_fsdax_mappings(self):
        strips = diagnose_pid(state("e820-whole-xfs"), 4242)
        assert len(strips) == 4  # [stack] is not DAX
        got = [sorted({(c.outcome, c.reason) for c in s.chunks}) for s in strips]
        assert got[0] == [("pmd", None)]
        assert got[1] == [("pte", "pmd-colour-mismatch")]
        assert got[2] == [("pte", "nohugepage")]
        assert got[3] == [("pmd", None)]  # reads of a private mapping may still be PMD-mapped
        assert strips[1].blocks() == 5  # 1 MiB off: the mapping straddles 5 PMDs
        from pmemtrace.host.strips import each_chunk

        # every chunk's first touch: the mapping's start, then each 2 MiB boundary inside it
        assert [o for o, _c in each_chunk(strips[1])] == [0, M, 3 * M, 5 * M, 7 * M]

    def test_devdax_mappings(self):
        shared, private = diagnose_pid(state("cxl-hmem"), 77)
        assert shared.blocks() == 512 and {c.outcome for c in shared.chunks} == {"pmd"}
        assert [(c.outcome, c.reason) for c in private.chunks] == [("error", "devdax-private")]

    def test_no_such_process(self):
        with pytest.raises(Exception) as ei:
            diagnose_pid(state("cxl-hmem"), 99999)
        assert "no process 99999" in str(ei.value)


class TestPictures:
    def test_svg_and_terminal_strip(self):
        strips = diagnose_pid(state("e820-whole-xfs"), 4242)
        svg = render_svg(strips)
        assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
        cells = sum(s.blocks() for s in strips)
        assert svg.count("<title>chunk ") == cells
        assert "pte: pmd-colour-mismatch" in svg and "pte: nohugepage" in svg  # legend entries
        assert terminal_strip(strips[1], colour=False) == ["ccccc"]
        assert terminal_strip(strips[0], colour=False) == ["####"]
        assert "\x1b[" in terminal_strip(strips[0], colour=True)[0]


# ---------------------------------------------------------------------------
# recorded lab fixtures: fixtures/<release>/<config>/META.json (pmemtrace lab record-fixtures)

RECORDED = sorted(
    p for p in glob.glob(os.path.join(FIXTURES, "*", "*", "META.json")) if os.sep + "handmade" + os.sep not in p
)


def _recorded_ids():
    return [os.path.relpath(os.path.dirname(p), FIXTURES) for p in RECORDED]


@pytest.mark.skipif(
    not RECORDED,
    reason="no recorded lab fixtures yet: run `pmemtrace lab record-fixtures` (fixtures/<release>/<config>/)",
)
@pytest.mark.parametrize("meta_path", RECORDED, ids=_recorded_ids())
def test_recorded_fixture(meta_path):
    meta = json.load(open(meta_path))
    d = os.path.dirname(meta_path)
    st = HostState(Roots(os.path.join(d, "sys"), os.path.join(d, "proc")))
    assert st.release == meta["kernel"]
    fs = diagnose_host(st)
    f = by_subject(fs)
    assert not any(x.code == "ns-unknown-mode" for x in fs)
    align = {"4K": 4096, "2M": 2 * M, "1G": G}[meta["align"]]
    if not meta.get("accepted"):
        # the kernel refused the config: the namespace geometry diagnose reads
        # must make the model refuse it too (nd_pfn_init() -ENXIO etc.)
        from pmemtrace.model.geometry import namespace_layout

        (ns,) = [n for n in st.inv.namespaces if n.name == "namespace0.0"]
        lay = namespace_layout(ns.size, ns.resource, meta["mode"], meta["map"], align, release=meta["kernel"])
        assert lay.error, f"{meta['config']} refused by {meta['kernel']} but the model accepts {lay.to_json()}"
        return
    if meta["mode"] == "fsdax":
        ns = f["namespace0.0"]
        assert "pmd-capable" in ns, ns
        assert ns["pmd-capable"].details["data_start"] % (2 * M) == 0
        assert "model_disagrees" not in ns["pmd-capable"].details, ns["pmd-capable"].details
        if meta["map"] == "dev":
            assert "memmap-device" in ns
            assert ns["pmd-capable"].details["data_start"] > ns["pmd-capable"].details["resource"]
        else:
            assert "memmap-ram" in ns
        if meta.get("filesystem"):
            mounts = [s for s, codes in f.items() if "mount-dax" in codes]
            assert mounts, f"no DAX mount found in {d}"
            if meta["filesystem"] == "xfs":  # the lab's mkfs.xfs -d su=2m,sw=1, read from mount options
                assert "fs-geometry-2m" in f[mounts[0]], f[mounts[0]]
    else:
        devs = [x for x in fs if x.kind == "dax"]
        assert devs, f"no dax device in {d}"
        want = {4096: ("devdax-align-4k", "pte"), 2 * M: ("devdax-pmd", "pmd"), G: ("devdax-pud", "pud")}[align]
        assert any((x.code, x.verdict) == want for x in devs), [(x.subject, x.code) for x in devs]
        assert all(x.details.get("provider") == "nvdimm" for x in devs if "provider" in x.details)


# ---------------------------------------------------------------------------
# the command line, on this host and on fixtures


def test_cli_json_on_fixture(capsys):
    t = os.path.join(HANDMADE, "cxl-hmem")
    assert main(["diagnose", "--sysfs-root", t + "/sys", "--procfs-root", t + "/proc", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {f["code"] for f in out["findings"]} >= {"devdax-pmd", "dax-system-ram", "dax-range-unaligned"}
    assert len(out["inventory"]["dax_devices"]) == 3


def test_cli_pid_svg(tmp_path, capsys):
    t = os.path.join(HANDMADE, "e820-whole-xfs")
    svg = tmp_path / "m.svg"
    rc = main(
        [
            "diagnose",
            "--sysfs-root",
            t + "/sys",
            "--procfs-root",
            t + "/proc",
            "--pid",
            "4242",
            "--svg",
            str(svg),
            "--no-colour",
        ]
    )
    cap = capsys.readouterr()
    assert rc == 0
    assert svg.read_text().count("<rect") > 13
    assert "ccccc" in cap.out and "wrote" in cap.err


def test_cli_bad_root_is_one_line(capsys, tmp_path):
    assert main(["diagnose", "--sysfs-root", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a directory" in err


def test_cli_missing_file_is_one_line(capsys):
    assert main(["diagnose", "/nonexistent/file"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err


def test_cli_host_file_on_non_dax_fs(tmp_path, capsys):
    p = tmp_path / "f"
    p.write_bytes(b"x" * 8192)
    assert main(["diagnose", str(p), "--json", "--no-host"]) == 0
    out = json.loads(capsys.readouterr().out)
    (s,) = out["strips"]
    assert [f["code"] for f in s["findings"]] == ["mount-no-dax"]


def test_cli_host_and_self_pid(capsys):
    # this host has no pmem: a finding, exit 0, no traceback
    assert main(["diagnose", "--pid", str(os.getpid()), "--json"]) == 0
    cap = capsys.readouterr()
    out = json.loads(cap.out)
    assert "no-pmem" in {f["code"] for f in out["findings"]}
    assert out["strips"] == [] and "no DAX mappings" in cap.err


def test_cli_partial_tree_gives_findings(tmp_path, capsys):
    """A tree where most files are missing or unreadable still diagnoses."""
    sysd = tmp_path / "sys" / "bus" / "nd" / "devices" / "namespace0.0"
    sysd.mkdir(parents=True)
    (sysd / "mode").write_text("weird\n")
    (sysd / "size").mkdir()  # unreadable
    (tmp_path / "proc").mkdir()
    assert (
        main(["diagnose", "--sysfs-root", str(tmp_path / "sys"), "--procfs-root", str(tmp_path / "proc"), "--json"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    codes = {f["code"] for f in out["findings"]}
    assert "ns-unknown-mode" in codes and "unreadable" in codes


def test_file_case_reproduces_with_explain(capsys, tmp_path):
    """The case diagnose builds is a valid case-format-v1 file: `pmemtrace
    explain CASE` gives the same per-chunk outcomes."""
    st = fake_stat(os.makedev(259, 1), 6 * M)
    ext = [dict(logical=0, physical=0, length=6 * M)]
    s = diagnose_file(state("e820-partition-2048"), "/mnt/pmem/f", fiemap=lambda p: ext, st=st)
    case = tmp_path / "case.json"
    case.write_text(json.dumps(s.case))
    assert main(["explain", str(case), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(r["outcome"], r["reason"]) for r in out["results"]] == [(c.outcome, c.reason) for c in s.chunks]
    assert [c.reason for c in s.chunks] == ["pfn-unaligned"] * 3


def test_observe_annotate_roundtrip():
    """--observe's chunk attribution: the model's own fs_dax events, rendered
    with the kernel print fmt (events.format_event) and parsed back by the
    real trace parser, land on the chunks with the predicted outcome."""
    from pmemtrace.events import format_event
    from pmemtrace.host import observe
    from pmemtrace.live.parse import parse_trace_text
    from pmemtrace.model import explain, parse_case

    strips = diagnose_pid(state("e820-whole-xfs"), 4242)
    lines = []
    for s in strips:
        for r in explain(parse_case(s.case)).results:
            for e in r.events():
                lines.append(
                    f"           app-4242    [000] .....   12.345678: {e.name}: {format_event(e.name, e.fields)}"
                )
    events = list(parse_trace_text(lines))
    assert events, "no events parsed"
    observe.annotate(strips, events)
    for s in strips:
        assert [c.observed for c in s.chunks] == [c.outcome for c in s.chunks], s.subject
    assert {c.observed for s in strips for c in s.chunks} == {"pmd", "pte"}


class TestMappingRunsAgainstEveryChunk:
    """diagnose --pid models a run of like chunks by its ends.  The oracle is
    what it did before (and what the kernel does): the first touch of every
    2 MiB chunk, in one case.  Random mappings over random extents (holes,
    unwritten, physically misaligned, EOF inside or before the mapping,
    devdax ranges) must give the same verdict for every chunk."""

    @staticmethod
    def every_chunk(pm, device, file, thp):
        from pmemtrace.host import cases
        from pmemtrace.host.strips import _Chunking
        from pmemtrace.model import explain, parse_case
        from pmemtrace.model.build import case_to_json

        ch = _Chunking(pm.start, pm.end)
        case = cases.mapping_case(
            "6.12.95+deb12-amd64", pm, device, file, thp, [ch.lo(k) - pm.start for k in range(ch.n)]
        )
        pred = explain(parse_case(case_to_json(case)))
        merr = pred.mapping_errors.get("m0")
        return [("error", merr) if merr else (r.outcome, r.reason) for r in pred.results]

    @staticmethod
    def runs(pm, device, file, thp):
        from pmemtrace.host.strips import _verdicts

        chunks, _js, err = _verdicts("6.12.95+deb12-amd64", pm, device, file, thp)
        assert err is None
        return [(c.outcome, c.reason) for c in chunks for _ in range(c.count)]

    def test_random_fsdax_mappings(self):
        import random

        from pmemtrace.host.procmaps import ProcMapping
        from pmemtrace.model.build import extent, fsdax_device
        from pmemtrace.model.case import File

        rng = random.Random(20261202)
        P = 4096
        for trial in range(150):
            exts, pos = [], 0
            for _ in range(rng.randint(0, 5)):
                pos += rng.choice((0, 0, P, M, 2 * M)) + rng.randint(0, 3) * 2 * M
                ln = rng.choice((2 * M, 4 * M, 6 * M, M, P * rng.randint(1, 700)))
                phys = 64 * M + pos + rng.choice((0, 0, P, M))
                exts.append(extent(pos, phys, ln, rng.random() < 0.2))
                pos += ln
            size = rng.choice((pos, pos + M, max(P, pos - M), 24 * M))
            file = File(size=size, extents=exts, ino=12, fs=rng.choice(("xfs", "ext4")))
            start = 0x7F0000000000 + rng.choice((0, P, M, 2 * M, 6 * M))
            length = rng.choice((2 * M, 8 * M, 3 * M + P, 20 * M, P * rng.randint(1, 9000)))
            offset = rng.choice((0, 0, M, 2 * M, 4 * M))
            perms = rng.choice(("rw-s", "rw-s", "r--s", "rw-p", "r--p"))
            flags = ["nh"] if rng.random() < 0.1 else []
            pm = ProcMapping(start, start + length, perms, offset, 259, 0, 12, "/mnt/pmem/f", flags)
            device = fsdax_device(data_start=rng.choice((0x100000000, 0x100100000)), map="mem", dev=(259 << 20))
            thp = rng.random() < 0.05
            assert self.runs(pm, device, file, thp) == self.every_chunk(pm, device, file, thp), (trial, pm, exts)

    def test_random_devdax_mappings(self):
        import random

        from pmemtrace.host.procmaps import ProcMapping
        from pmemtrace.model.build import devdax_device
        from pmemtrace.model.case import Range

        rng = random.Random(7)
        for trial in range(60):
            align = rng.choice((4096, 2 * M, G))
            ranges, pg = [], 0
            for _ in range(rng.randint(1, 3)):
                ln = rng.choice((2 * M, 8 * M, G))
                ranges.append(Range(start=0x100000000 + rng.choice((0, 2 * M, G)) + pg * 4096, length=ln, pgoff=pg))
                pg += ln // 4096
            device = devdax_device(align, ranges=ranges)
            start = 0x7F0000000000 + rng.choice((0, 2 * M, 4096))
            length = rng.choice((2 * M, 16 * M, 3 * G // 2))
            pm = ProcMapping(
                start,
                start + length,
                rng.choice(("rw-s", "rw-p")),
                rng.choice((0, 2 * M)),
                252,
                0,
                0,
                "/dev/dax0.0",
                [],
            )
            assert self.runs(pm, device, None, False) == self.every_chunk(pm, device, None, False), (trial, pm)


def test_pid_mapping_of_the_whole_address_space_is_bounded(tmp_path):
    """An smaps range covering the address space (MemoryError before runs)
    gives a handful of runs."""
    t = os.path.join(HANDMADE, "e820-whole-xfs")
    proc = tmp_path / "proc"
    import shutil

    shutil.copytree(os.path.join(t, "proc"), proc, symlinks=True)
    (proc / "4242" / "smaps").write_text(
        "00001000-ffffffffffff000 rw-s 00000000 103:00 12   /mnt/pmem/data\nVmFlags: rd wr sh mr mw me ms\n"
    )
    (strip,) = diagnose_pid(HostState(Roots(os.path.join(t, "sys"), str(proc))), 4242)
    assert strip.blocks() == (0xFFFFFFFFFFFF000 - 1) // (2 * M) + 1 and len(strip.chunks) <= 4
    assert len(strip.case["accesses"]) <= 4
