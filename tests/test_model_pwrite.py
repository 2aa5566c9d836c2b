"""write(2) to a DAX file in the model (case op "pwrite"): fs/dax.c
dax_iomap_iter() invalidates what a newly allocated range had mapped (the
huge zero page over a hole) so mmap sees the data; checked against the
lab's 6.1 trace of fstests generic/428 (PMD hole load, pwrite, then PMD
FALLBACK + PTE fault)."""

import pytest

from pmemtrace.model import parse_case
from pmemtrace.model.case import CaseError

from modelkit import A, M, fsdax, r


def w(off, m="m0"):
    return {"mapping": m, "offset": off, "op": "write"}


def pw(off, length=4096):
    return {"op": "pwrite", "offset": off, "length": length}


def _outcomes(pred):
    return [(x.op, x.outcome, x.reason) for x in pred.results]


def test_pwrite_into_hole_zaps_the_huge_zero_page():
    # generic/428: a 2 MiB mapping of file offset 2M over a hole
    p = fsdax(
        [r(0), pw(2 * M), r(0)],
        file_size=4 * M,
        extents=[],
        mappings=[{"id": "m0", "start": A, "length": 2 * M, "offset": 2 * M, "writable": False}],
        kernel="6.1.0-50-amd64",
    )
    assert _outcomes(p) == [
        ("read", "huge-zero", None),
        ("pwrite", "written", None),
        ("read", "pte", "extent-too-short"),
    ]
    names = [e.name for e in p.events()]
    assert names == [
        "dax_pmd_fault",
        "dax_pmd_load_hole",
        "dax_pmd_fault_done",
        "dax_pmd_fault",
        "dax_pmd_fault_done",
        "dax_pte_fault",
        "dax_pte_fault_done",
    ]


def test_pwrite_over_written_blocks_changes_no_mapping():
    # no IOMAP_F_NEW: nothing is invalidated, the PMD stays, the read hits it
    p = fsdax([w(0), pw(4096), r(4096)])
    assert _outcomes(p)[0][1] == "pmd"
    assert p.results[2].outcome == "none" and not p.results[2].faults


def test_pwrite_zaps_pte_zero_pages_only_in_its_range():
    # 4 KiB hole loads in two pages; writing the first page only re-faults it
    p = fsdax(
        [r(0), r(8192), pw(0), r(0), r(8192)],
        extents=[],
        mappings=[{"id": "m0", "start": A, "length": 16 * M, "nohugepage": True}],
    )
    o = _outcomes(p)
    assert [x[1] for x in o] == ["zero-pte", "zero-pte", "written", "pte", "none"], o


def test_pwrite_keeps_private_cow_copies():
    # unmap_mapping_pages(even_cows=false): the anonymous copy stays
    p = fsdax(
        [w(0), pw(0)],
        extents=[],
        mappings=[{"id": "m0", "start": A, "length": 16 * M, "shared": False, "nohugepage": True}],
    )
    assert p.results[0].outcome == "cow"
    p2 = fsdax(
        [w(0), pw(0), r(0)],
        extents=[],
        mappings=[{"id": "m0", "start": A, "length": 16 * M, "shared": False, "nohugepage": True}],
    )
    assert p2.results[2].outcome == "none"  # still mapped: the COW copy


def test_pwrite_past_eof_grows_the_file():
    before = fsdax([r(5 * M)], file_size=4 * M)
    assert before.results[0].outcome == "sigbus"
    after = fsdax([pw(4 * M, 2 * M), r(5 * M)], file_size=4 * M)
    assert after.results[1].outcome != "sigbus"


@pytest.mark.parametrize(
    "acc,key",
    [
        ({"op": "pwrite", "mapping": "m0", "offset": 0, "length": 4096}, "accesses[0].mapping"),
        ({"op": "pwrite", "offset": 0}, "accesses[0].length"),
    ],
)
def test_pwrite_case_errors(acc, key):
    c = {
        "version": 1,
        "device": {"mode": "fsdax", "size": "1G"},
        "file": {"size": 4 * M, "extents": []},
        "mappings": [{"id": "m0", "start": A, "length": 2 * M}],
        "accesses": [acc],
    }
    with pytest.raises(CaseError) as e:
        parse_case(c)
    assert str(e.value).startswith("case: " + key)


def test_pwrite_needs_a_file():
    c = {
        "version": 1,
        "device": {"mode": "devdax", "size": "1G", "align": "2M"},
        "mappings": [{"id": "m0", "start": A, "length": 2 * M}],
        "accesses": [pw(0)],
    }
    with pytest.raises(CaseError, match="devdax"):
        parse_case(c)


def test_write_converts_every_contiguous_unwritten_extent():
    # two physically contiguous 1 MiB unwritten extents: lookup() sees one
    # 2 MiB run; a write fault converts both and maps a PMD
    ext = [
        {"logical": 0, "physical": 2 * M, "length": M, "unwritten": True},
        {"logical": M, "physical": 3 * M, "length": M, "unwritten": True},
    ]
    p = fsdax([w(0), w(M)], file_size=2 * M, extents=ext, mappings=[{"id": "m0", "start": A, "length": 2 * M}])
    assert p.results[0].outcome == "pmd", _outcomes(p)
    assert p.results[1].outcome == "none"


def test_madvise_past_the_mapping_is_enomem_not_a_crash():
    p = fsdax(
        [r(2 * M), {"mapping": "m0", "op": "madvise", "advice": "dontneed", "offset": 3 * M + 8192}],
        mappings=[{"id": "m0", "start": A, "length": 3 * M}],
    )
    assert p.results[1].outcome == "error" and p.results[1].errno == 12
