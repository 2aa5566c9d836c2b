"""The writeback a MAP_SYNC fault's fsync does (fs/dax.c
dax_finish_sync_fault() -> vfs_fsync_range() -> dax_writeback_mapping_range()),
the per-entry dirty marks behind it, the write-protection it leaves, and
where hole writes get their blocks (case key file.allocated).  The lab
observation behind the writeback is fixtures/regressions/map-sync-dirty-inode."""

import pytest

from pmemtrace.model import explain, parse_case
from pmemtrace.model.build import allocated_extents, case_to_json
from pmemtrace.model.case import CaseError

from modelkit import A, M, w

# 4 MiB file: the first 2 MiB written, then 2 MiB unwritten (a write there
# converts blocks: the inode's metadata is then not durable, so the next
# MAP_SYNC write gets NEEDDSYNC)
EXTENTS = [
    {"logical": 0, "physical": 2 * M, "length": 2 * M},
    {"logical": 2 * M, "physical": 4 * M, "length": 2 * M, "unwritten": True},
]
B = A + 64 * M  # second mapping


def case(accesses, mappings, kernel="6.12.95+deb12-amd64", extents=EXTENTS, allocated=None, size=4 * M):
    c = {
        "version": 1,
        "kernel": kernel,
        "device": {"mode": "fsdax", "align": "2M", "size": "1G", "data_start": "0x100000000"},
        "file": {"size": size, "fs": "xfs", "ino": 12, "extents": extents},
        "mappings": mappings,
        "accesses": accesses,
    }
    if allocated is not None:
        c["file"]["allocated"] = allocated
    return parse_case(c)


def names(pred, i):
    return [e.name.replace("dax_", "") for e in pred.results[i].events()]


def two_mappings(sync_nohuge=False):
    return [
        {"id": "plain", "start": A, "length": 4 * M, "nohugepage": True},
        {"id": "sync", "start": B, "length": 4 * M, "sync": True, "nohugepage": sync_nohuge},
    ]


def test_sync_fault_writes_back_dirty_entries_in_its_range_and_write_protects_them():
    p = explain(
        case(
            [
                w(4096, "plain"),  # PTE write: entry 1 dirty
                w(2 * M, "plain"),  # converts unwritten blocks: inode datasync-dirty
                w(4096, "sync"),  # PMD falls back (entry 1), PTE NEEDDSYNC: fsync of page 1
                w(4096, "plain"),  # written back and write-protected: faults again
            ],
            two_mappings(),
        )
    )
    assert names(p, 2) == [
        "pmd_fault",
        "pmd_fault_done",
        "pte_fault",
        "pte_fault_done",
        "writeback_range",
        "writeback_one",
        "writeback_range_done",
        "insert_pfn_mkwrite",
    ]
    ev = {e.name: e.fields for e in p.results[2].events()}
    assert (ev["dax_writeback_one"]["pgoff"], ev["dax_writeback_one"]["pglen"]) == (1, 1)
    assert (ev["dax_writeback_range"]["start_index"], ev["dax_writeback_range"]["end_index"]) == (1, 1)
    # the write-protected PTE: ->pfn_mkwrite, a PTE fault with MKWRITE
    assert names(p, 3) == ["pte_fault", "pte_fault_done"]
    assert p.results[3].events()[0].fields["flags"] & 0x2  # FAULT_FLAG_MKWRITE


def test_a_pmd_sync_fault_writes_back_from_its_page_for_2_mib():
    # vmf->pgoff is the faulting page, not the block's first: a PMD fault
    # at page 7 fsyncs pages 7..518, so the dirty entry of page 513 (next
    # block) is written back and that of page 1536 is not
    p = explain(
        case(
            [w(513 * 4096, "plain"), w(6 * M, "plain"), w(7 * 4096, "sync")],
            [
                {"id": "plain", "start": A, "length": 8 * M, "nohugepage": True},
                {"id": "sync", "start": B, "length": 4 * M, "sync": True},
            ],
            extents=[
                {"logical": 0, "physical": 2 * M, "length": 6 * M},
                {"logical": 6 * M, "physical": 8 * M, "length": 2 * M, "unwritten": True},
            ],
            size=8 * M,
        )
    )
    assert p.results[2].outcome == "pmd"
    ev = [(e.name, e.fields) for e in p.results[2].events()]
    rng = next(f for n, f in ev if n == "dax_writeback_range")
    assert (rng["start_index"], rng["end_index"]) == (7, 518)
    assert [f["pgoff"] for n, f in ev if n == "dax_writeback_one"] == [513]


def test_a_file_without_dirty_entries_gets_no_writeback_walk():
    # the fault's own conversion makes it synchronous; nothing in the file is
    # tagged dirty, so filemap_fdatawrite_wbc() returns before ->writepages
    p = explain(case([w(2 * M, "sync"), w(0, "sync")], two_mappings()))
    assert names(p, 0) == ["pmd_fault", "pmd_fault_done", "insert_pfn_mkwrite"]
    assert p.results[0].events()[1].fields["result"] == 0x2000  # NEEDDSYNC
    # the fsync made the metadata durable: the next MAP_SYNC write is plain
    assert names(p, 1) == ["pmd_fault", "pmd_fault_done"]
    assert p.results[1].events()[1].fields["result"] == 0x100


def test_a_dirty_entry_outside_the_range_walks_it_and_writes_back_nothing():
    # page 512's entry is dirty (and the conversion left the inode dirty);
    # the MAP_SYNC fault's range is pages 0..511
    p = explain(case([w(2 * M, "plain"), w(0, "sync")], two_mappings()))
    assert names(p, 1) == [
        "pmd_fault",
        "pmd_fault_done",
        "writeback_range",
        "writeback_range_done",
        "insert_pfn_mkwrite",
    ]


def _pte_mapped_pmd_entry(kernel):
    """A PMD data entry (made by an aligned mapping's write), written through
    PTEs of a nohugepage mapping at pages 0 and 5, then written back by a
    MAP_SYNC fault; returns whether page 5's next write faults."""
    maps = [
        {"id": "huge", "start": A, "length": 4 * M},
        {"id": "pte", "start": B, "length": 4 * M, "nohugepage": True},
        {"id": "sync", "start": B + 64 * M, "length": 4 * M, "sync": True, "nohugepage": True},
    ]
    p = explain(
        case(
            [w(0, "huge"), w(0, "pte"), w(5 * 4096, "pte"), w(2 * M, "huge"), w(7 * 4096, "sync"), w(5 * 4096, "pte")],
            maps,
            kernel=kernel,
        )
    )
    assert "writeback_one" in names(p, 4)
    return bool(p.results[5].events())


def test_writeback_protects_every_page_of_the_entry_from_5_18():
    # Linux kernel commit 06083a0921fd ("dax: fix missing writeprotect the pte entry") (in v5.18)
    assert _pte_mapped_pmd_entry("6.12.95+deb12-amd64")
    assert _pte_mapped_pmd_entry("5.18.0")
    assert not _pte_mapped_pmd_entry("5.10.0-46-amd64")


def test_sync_pte_fault_on_a_pmd_entry_finds_no_pte_entry_and_faults_again():
    maps = [
        {"id": "huge", "start": A, "length": 4 * M},
        {"id": "sync", "start": B, "length": 4 * M, "sync": True, "nohugepage": True},
    ]
    p = explain(case([w(0, "huge"), w(2 * M, "huge"), w(4096, "sync")], maps))
    ev = names(p, 2)
    assert ev[:2] == ["pte_fault", "pte_fault_done"]
    assert "insert_pfn_mkwrite_no_entry" in ev
    # the access runs again: an ordinary PTE write (the metadata is durable now)
    assert ev[-2:] == ["pte_fault", "pte_fault_done"]
    assert p.results[2].events()[-1].fields["result"] == 0x100  # NOPAGE


# ---------------------------------------------------------------------------
# file.allocated


HOLE = [{"logical": 0, "physical": 2 * M, "length": 2 * M}]  # then a 2 MiB hole


def test_recorded_placement_decides_a_hole_pmd_write():
    maps = [{"id": "m0", "start": A, "length": 4 * M}]
    # no record: the model's 2 MiB-aligned allocation, a PMD
    p = explain(case([w(2 * M)], maps, extents=HOLE))
    assert p.results[0].outcome == "pmd"
    # the filesystem put the blocks 1 MiB off a 2 MiB boundary: FALLBACK
    # (pfn-unaligned), then the PTE fault finds them allocated (no MAJOR)
    p = explain(
        case([w(2 * M)], maps, extents=HOLE, allocated=[{"logical": 2 * M, "physical": 9 * M, "length": 2 * M}])
    )
    res = p.results[0]
    assert (res.outcome, res.reason) == ("pte", "pfn-unaligned")
    assert [e.fields.get("result") for e in res.events() if e.name.endswith("_done")] == [0x800, 0x100]
    # two pieces that are not contiguous: the mapping is too short
    split = [
        {"logical": 2 * M, "physical": 8 * M, "length": M},
        {"logical": 3 * M, "physical": 12 * M, "length": M},
    ]
    p = explain(case([w(2 * M)], maps, extents=HOLE, allocated=split))
    assert p.results[0].reason == "extent-too-short"


def test_allocated_round_trips_and_is_checked():
    c = case(
        [w(0, "m0")],
        [{"id": "m0", "start": A, "length": 4 * M}],
        extents=HOLE,
        allocated=[{"logical": 2 * M, "physical": 9 * M, "length": 4096}],
    )
    j = case_to_json(c)
    assert j["file"]["allocated"] == [{"logical": 2 * M, "physical": hex(9 * M), "length": 4096}]
    bad = dict(j, file=dict(j["file"], allocated=[{"logical": 0, "physical": 0, "length": 4096}]))
    with pytest.raises(CaseError, match=r"file\.allocated"):
        parse_case(bad)


def test_allocated_extents_are_the_former_holes():
    before = [{"logical": 0, "physical": 0x100000, "length": 0x2000, "unwritten": True}]
    after = [
        {"logical": 0, "physical": 0x100000, "length": 0x2000, "unwritten": False},  # converted: not allocated
        {"logical": 0x2000, "physical": 0x500000, "length": 0x3000, "unwritten": False},
    ]
    got = [(e.logical, e.physical, e.length) for e in allocated_extents(before, after)]
    assert got == [(0x2000, 0x500000, 0x3000)]
    # one extent after that spans a former extent and holes either side
    before = [{"logical": 0x1000, "physical": 0x101000, "length": 0x1000, "unwritten": False}]
    after = [{"logical": 0, "physical": 0x100000, "length": 0x4000, "unwritten": False}]
    got = [(e.logical, e.physical, e.length) for e in allocated_extents(before, after)]
    assert got == [(0, 0x100000, 0x1000), (0x2000, 0x102000, 0x2000)]


def test_reads_tag_entries_dirty_only_from_5_19_to_6_1():
    # a read, then a MAP_SYNC write that converts: is the file tagged dirty?
    maps = two_mappings()
    acc = [{"mapping": "plain", "offset": 4096, "op": "read"}, w(2 * M, "sync")]
    walks = {
        k: "writeback_range" in names(explain(case(acc, maps, kernel=k)), 1)
        for k in ("5.10.0-46-amd64", "5.18.0", "5.19.0", "6.1.0-50-amd64", "6.2.0", "6.12.95+deb12-amd64", "7.2.13")
    }
    assert walks == {
        "5.10.0-46-amd64": False,
        "5.18.0": False,
        "5.19.0": True,
        "6.1.0-50-amd64": True,
        "6.2.0": False,
        "6.12.95+deb12-amd64": False,
        "7.2.13": False,
    }
