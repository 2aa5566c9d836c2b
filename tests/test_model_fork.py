"""fork in a case (pmemtrace/model/fork.py): which page tables the child
inherits, and what the fork does to the parent."""

from modelkit import A, M, fsdax, r, w

FORK, EXIT = {"op": "fork"}, {"op": "exit"}


def cr(off):
    return {"mapping": "m0", "offset": off, "op": "read", "child": True}


def cw(off):
    return {"mapping": "m0", "offset": off, "op": "write", "child": True}


def test_a_shared_mapping_starts_empty_in_the_child():
    # vma_needs_copy(): no anon_vma, no PFNMAP/MIXEDMAP -> no page tables
    p = fsdax([w(0), r(2 * M), FORK, cr(0), cr(2 * M), r(0)], mappings=[{"id": "m0", "start": A, "length": 4 * M}])
    assert [x.outcome for x in p.results[:2]] == ["pmd", "pmd"]
    assert p.results[3].outcome == "pmd" and p.results[3].to_json()["events"]
    assert p.results[4].outcome == "pmd"
    assert p.results[5].outcome == "none"  # the parent keeps its PMD


def test_a_private_mapping_with_cow_pages_is_copied_but_not_its_huge_pmds():
    mp = [{"id": "m0", "start": A, "length": 4 * M, "shared": False, "nohugepage": True}]
    acc = [r(0), w(4096), FORK, cr(0), cr(4096), cw(4096), w(4096), EXIT, r(8192)]
    p = fsdax(acc, mappings=mp)
    assert [x.outcome for x in p.results[:2]] == ["pte", "cow"]
    # the PTEs came with the VMA (it has an anon_vma): no fault in the child
    assert [x.outcome for x in p.results[3:5]] == ["none", "none"]
    # the COW'd page is write-protected on both sides: do_wp_page, no event
    assert p.results[5].outcome == "cow" and not p.results[5].to_json()["events"]
    assert p.results[6].outcome == "cow" and not p.results[6].to_json()["events"]
    # a private mapping never written has no anon_vma: nothing copied
    q = fsdax([r(0), FORK, cr(0)], mappings=mp)
    assert q.results[2].outcome == "pte"


def test_a_child_access_needs_a_fork():
    import pytest

    from pmemtrace.errors import CaseError
    from pmemtrace.model import parse_case

    case = {
        "device": {"mode": "fsdax", "size": "1G"},
        "file": {"size": "4M", "extents": [{"logical": 0, "physical": 0, "length": "4M"}]},
        "mappings": [{"id": "m0", "start": A, "length": 4 * M}],
        "accesses": [FORK, EXIT, cr(0)],
    }
    with pytest.raises(CaseError, match="no child"):
        parse_case(case)


def test_a_sigbus_in_the_child_ends_it():
    from modelkit import devdax

    mp = [{"id": "m0", "start": A, "length": 4 * M, "nohugepage": True}]
    p = devdax([FORK, cr(0), cr(2 * M), r(0)], mappings=mp)
    # a 4 KiB fault on a 2 MiB device-dax: SIGBUS, and the child is gone
    assert p.results[1].outcome == "sigbus"
    assert (p.results[2].outcome, p.results[2].reason) == ("error", "no-child")
    assert p.results[3].outcome == "sigbus"  # the parent's own fault


def test_a_neighbours_page_table_reaches_the_child_only_with_its_anon_vma():
    # the mapping starts 1 MiB into a block another VMA of the process has a
    # table in (process.page_tables): the parent goes straight to the PTE
    # path there; the child gets that table only when the neighbour's VMA
    # has an anon_vma at the fork (process.fork_tables, copy_page_range())
    mp = [{"id": "m0", "start": A + M, "length": 3 * M}]
    blk = hex(A)
    p = fsdax([r(0), FORK, cr(0)], mappings=mp, process={"page_tables": [blk]})
    assert p.results[0].to_json()["events"][0]["name"] == "dax_pte_fault"
    # lab, 5.10..7.3: the child's first access there tries the PMD first
    assert [e["name"] for e in p.results[2].to_json()["events"]][:2] == ["dax_pmd_fault", "dax_pmd_fault_done"]
    q = fsdax([r(0), FORK, cr(0)], mappings=mp, process={"page_tables": [blk], "fork_tables": [blk]})
    assert q.results[2].to_json()["events"][0]["name"] == "dax_pte_fault"
    assert q.results[2].reason == "pte-table-present"


def test_a_write_in_the_child_zaps_the_parents_zero_page():
    # dax_insert_entry(): a data entry replacing a zero entry is preceded by
    # unmap_mapping_pages() over the file -- the parent's VMA is in i_mmap
    ext = [{"logical": 0, "physical": 2 * M, "length": 4 * M, "unwritten": True}]
    mp = [{"id": "m0", "start": A, "length": 4 * M, "nohugepage": True}]
    p = fsdax([r(0), FORK, cr(0), cw(0), r(0)], extents=ext, file_size=4 * M, mappings=mp)
    assert p.results[0].outcome == "zero-pte"
    assert p.results[4].outcome == "pte"  # faults again (lab: 5.10 xfs, seed 32 case 1490)
    # and the other way round: the parent's write zaps the child's zero page
    q = fsdax([FORK, cr(0), w(0), cr(0)], extents=ext, file_size=4 * M, mappings=mp)
    assert q.results[1].outcome == "zero-pte" and q.results[3].outcome == "pte"
