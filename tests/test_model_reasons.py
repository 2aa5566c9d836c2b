"""One test per reason code, each built from the kernel rule it names
(pmemtrace/model/reasons.py carries the citation).

Coverage is asserted, not hoped for: ``covers(code)`` is the value each
test compares the model's reason with, and the set of codes named in
``covers(...)`` calls must be exactly the model's reason codes
(:func:`test_every_reason_code_has_a_test`).  Independently, every code must
be produced by some embedded example or scenario run through the model
(:func:`test_every_reason_code_is_produced_by_an_example_or_scenario`), so
a code that only a hand-built test can reach is noticed."""

import ast

import pytest

from pmemtrace.model import explain, parse_case
from pmemtrace.model.reasons import REASONS

from modelkit import A, M, devdax, events, fsdax, r, rows, w

NOPAGE, FALLBACK, SIGBUS, DONE_COW = 0x100, 0x800, 0x2, 0x1000


def covers(code):
    """The reason code a test expects; fails at once on a code the model does not have."""
    assert code in REASONS, f"{code!r} is not a reason code of pmemtrace.model.reasons"
    return code


def test_nohugepage_gate_skips_the_pmd_handler():
    # hugepage_vma_check(): VM_NOHUGEPAGE -> no huge_fault at all
    p = fsdax([r(0)], mappings=[{"id": "m0", "start": A, "length": 16 * M, "nohugepage": True}])
    assert rows(p) == [("pte", NOPAGE, covers("nohugepage"))]
    assert [e for e, _ in events(p, 0)] == ["dax_pte_fault", "dax_pte_fault_done"]


def test_thp_disable_gate():
    p = fsdax([r(0)], process={"thp_disable": True})
    assert rows(p) == [("pte", NOPAGE, covers("thp-disabled"))]
    assert "dax_pmd_fault" not in [e for e, _ in events(p, 0)]


def test_pte_table_present_after_4k_fault_in_same_2m():
    acc = [{"op": "madvise", "advice": "nohugepage"}, r(0), {"op": "madvise", "advice": "hugepage"}, r(4096), r(2 * M)]
    p = fsdax(acc)
    assert rows(p)[3] == ("pte", NOPAGE, covers("pte-table-present"))
    assert "dax_pmd_fault" not in [e for e, _ in events(p, 3)]
    assert rows(p)[4][0] == "pmd"  # the next 2 MiB is untouched


def test_page_table_left_by_a_neighbouring_mapping():
    # Lab, 6.12 xfs: a 3 MiB DAX mapping whose last 2 MiB block also holds a
    # touched anonymous page: the read at 2 MiB takes no dax_pmd_fault, only a
    # PTE fault with ORIG_PTE_VALID; with PROT_NONE neighbours it is a
    # vma-end FALLBACK (tests below).
    maps = [{"id": "m0", "start": A, "length": 3 * M}]
    p = fsdax([r(2 * M)], mappings=maps, process={"page_tables": [A + 3 * M]})
    assert rows(p) == [("pte", NOPAGE, covers("pte-table-present"))]
    ev = p.results[0].events()
    assert [e.name for e in ev] == ["dax_pte_fault", "dax_pte_fault_done"]
    assert ev[0].fields["flags"] & 0x800
    p = fsdax([r(2 * M)], mappings=maps)
    assert rows(p) == [("pte", NOPAGE, "vma-end")]


def test_sigbus_when_pmd_index_at_or_past_eof():
    # P0: xas.xa_index >= max_pgoff -> SIGBUS, no fallback accounting
    p = fsdax([r(6 * M)], file_size=4 * M, mappings=[{"id": "m0", "start": A, "length": 8 * M}])
    assert rows(p) == [("sigbus", SIGBUS, covers("sigbus-eof"))]
    assert events(p, 0) == [("dax_pmd_fault", 0), ("dax_pmd_fault_done", SIGBUS)]
    assert p.summary()["vmstat"]["thp_fault_fallback"] == 0


def test_colour_mismatch():
    # (pgoff & 511) != ((address >> 12) & 511)
    p = fsdax([r(0)], mappings=[{"id": "m0", "start": A + 4096, "length": 8 * M, "offset": 0}])
    assert rows(p) == [("pte", NOPAGE, covers("pmd-colour-mismatch"))]
    assert events(p, 0)[:2] == [("dax_pmd_fault", 0), ("dax_pmd_fault_done", FALLBACK)]
    # same address with a matching offset colour is fine for the colour test
    p = fsdax([r(2 * M)], mappings=[{"id": "m0", "start": A + 4096, "length": 8 * M, "offset": 4096}])
    assert rows(p)[0][0] == "pmd"


def test_private_write_cows_at_4k():
    p = fsdax([r(0), w(2 * M), w(0)], mappings=[{"id": "m0", "start": A, "length": 16 * M, "shared": False}])
    assert rows(p)[0] == ("pmd", NOPAGE, None)  # private reads may use PMDs
    assert rows(p)[1] == ("cow", DONE_COW, covers("private-write"))
    # a write to the read-only private PMD: wp_huge_pmd() splits (zaps) it and COWs
    assert rows(p)[2][0] == "cow"
    assert p.summary()["vmstat"]["thp_split_pmd"] == 1


def test_vma_start():
    p = fsdax([r(0)], mappings=[{"id": "m0", "start": A + 4096, "length": 8 * M, "offset": 4096}])
    assert rows(p) == [("pte", NOPAGE, covers("vma-start"))]


def test_vma_end():
    p = fsdax([r(2 * M)], mappings=[{"id": "m0", "start": A, "length": 3 * M}])
    assert rows(p) == [("pte", NOPAGE, covers("vma-end"))]


def test_beyond_eof_then_sigbus_on_pte_path():
    ext = [{"logical": 0, "physical": 2 * M, "length": 4 * M}]
    p = fsdax([r(2 * M), r(3 * M)], file_size=3 * M, extents=ext, mappings=[{"id": "m0", "start": A, "length": 4 * M}])
    assert rows(p)[0] == ("pte", NOPAGE, covers("beyond-eof"))
    # pgoff 768 >= max_pgoff 768: passes P0 (index 512 < 768), falls back (C5)... but
    # the PMD slot now holds a table, so the PTE path answers SIGBUS directly
    assert rows(p)[1] == ("sigbus", SIGBUS, "sigbus-eof")


def test_pte_entry_in_xarray_outlives_munmap():
    maps = [
        {"id": "small", "start": 0x7E0000000000, "length": 2 * M, "nohugepage": True},
        {"id": "big", "start": A, "length": 16 * M},
    ]
    p = fsdax([r(0, "small"), {"mapping": "small", "op": "munmap"}, r(0, "big"), r(2 * M, "big")], mappings=maps)
    assert rows(p)[2] == ("pte", NOPAGE, covers("pte-entry-present"))
    assert rows(p)[3][0] == "pmd"


def test_extent_too_short():
    ext = [{"logical": 0, "physical": 2 * M, "length": M}, {"logical": M, "physical": 9 * M, "length": 3 * M}]
    p = fsdax([r(0)], file_size=4 * M, extents=ext, mappings=[{"id": "m0", "start": A, "length": 4 * M}])
    assert rows(p) == [("pte", NOPAGE, covers("extent-too-short"))]


def test_extent_contiguous_pieces_are_one_mapping():
    ext = [{"logical": 0, "physical": 2 * M, "length": M}, {"logical": M, "physical": 3 * M, "length": 3 * M}]
    p = fsdax([r(0)], file_size=4 * M, extents=ext, mappings=[{"id": "m0", "start": A, "length": 4 * M}])
    assert rows(p)[0][0] == "pmd"


def test_pfn_unaligned():
    ext = [{"logical": 0, "physical": M, "length": 4 * M}]
    p = fsdax([r(0)], file_size=4 * M, extents=ext, mappings=[{"id": "m0", "start": A, "length": 4 * M}])
    assert rows(p) == [("pte", NOPAGE, covers("pfn-unaligned"))]
    # data_start 1 MiB past a 2 MiB boundary breaks otherwise aligned extents
    dev = {"mode": "fsdax", "size": "1G", "data_start": "0x100100000"}
    p = fsdax([r(0)], device=dev)
    assert rows(p)[0][2] == "pfn-unaligned"


def test_pfn_no_devmap_only_before_6_15():
    dev = {"mode": "fsdax", "size": "1G", "data_start": "0x100000000", "struct_pages": False}
    p = fsdax([r(0)], device=dev, kernel="6.1.0-27-amd64")
    assert rows(p) == [("pte", NOPAGE, covers("pfn-no-devmap"))]
    p = fsdax([r(0)], device=dev, kernel="6.15.1")
    assert rows(p)[0][0] == "pmd"


def test_longterm_pin_of_fsdax_refused_but_plain_pin_works():
    p = fsdax(
        [
            {"mapping": "m0", "op": "gup", "offset": 0, "length": M, "write": True, "longterm": True},
            {"mapping": "m0", "op": "gup", "offset": 0, "length": M, "write": True},
        ]
    )
    assert p.results[0].outcome == "error" and p.results[0].errno == 95
    assert p.results[0].reason == covers("longterm-pin-fsdax")
    assert p.results[1].outcome == "pinned" and p.results[1].pinned == 256


def test_longterm_pin_of_device_dax_refused_by_io_uring_until_6_5():
    pin = {"mapping": "m0", "op": "gup", "offset": 0, "length": M, "write": True, "longterm": True}
    # 6.1: GUP pins (and faults in) the range, then io_pin_pages() refuses
    # the file-backed VMA
    p = devdax([pin], kernel="6.1.0-50-amd64")
    res = p.results[0]
    assert (res.outcome, res.errno, res.reason) == ("error", 95, covers("longterm-pin-file-vma"))
    assert [f.outcome for _, f in res.faults] == ["pmd"]
    # 6.5 on: GUP decides, and device-dax may be pinned long-term
    for kernel in ("6.5.0", "6.12.95+deb12-amd64"):
        res = devdax([pin], kernel=kernel).results[0]
        assert (res.outcome, res.errno) == ("pinned", None)


def test_longterm_pin_partial_is_efault_plain_pin_is_short():
    # a 1 MiB pin from 512 KiB before the end of a 6 MiB mapping of an
    # 8 MiB device-dax range: the first half pins, the rest is not mapped
    mappings = [{"id": "m0", "start": A, "length": 6 * M}]
    off = 6 * M - M // 2
    pin = {"mapping": "m0", "op": "gup", "offset": off, "length": M, "write": True}
    res = devdax([dict(pin, longterm=True)], mappings=mappings).results[0]
    assert (res.outcome, res.errno, res.reason) == ("error", 14, covers("longterm-pin-partial"))
    res = devdax([pin], mappings=mappings).results[0]
    assert (res.outcome, res.errno, res.pinned) == ("pinned", None, 128)


def test_longterm_pin_of_read_only_fsdax_is_eopnotsupp_before_efault():
    ro = [{"id": "m0", "start": A, "length": 8 * M, "writable": False}]
    pin = {"mapping": "m0", "op": "gup", "offset": 0, "length": M, "write": True, "longterm": True}
    # check_vma_flags() tests FOLL_LONGTERM on fsdax before VM_WRITE (v5.11 on)
    assert fsdax([pin], mappings=ro).results[0].errno == 95
    # 5.10: the write check first, the DAX check only after the pin
    assert fsdax([pin], mappings=ro, kernel="5.10.0-46-amd64").results[0].errno == 14


def test_devdax_private_and_unaligned_mmap_refused():
    p = devdax([r(0)], mappings=[{"id": "m0", "start": A, "length": 4 * M, "shared": False}])
    assert (p.results[0].outcome, p.results[0].errno, p.results[0].reason) == ("error", 22, covers("devdax-private"))
    p = devdax([r(0)], mappings=[{"id": "m0", "start": A + 4096, "length": 4 * M}])
    assert p.results[0].reason == covers("devdax-vma-unaligned")
    # 4K-aligned device: the same address is fine
    p = devdax([r(0)], align="4K", mappings=[{"id": "m0", "start": A + 4096, "length": 4 * M}])
    assert p.results[0].outcome == "pte"


def test_devdax_align_smaller_falls_back_to_4k():
    p = devdax([r(0)], align="4K")
    assert rows(p) == [("pte", NOPAGE, covers("devdax-align-smaller"))]
    assert p.results[0].all_calls()["vmf_insert_mixed"] == 1


def test_devdax_align_larger_sigbus():
    p = devdax([r(0)], mappings=[{"id": "m0", "start": A, "length": 4 * M, "nohugepage": True}])
    assert rows(p) == [("sigbus", SIGBUS, covers("devdax-align-larger"))]
    p = devdax(
        [r(0)], align="1G", size="2G", mappings=[{"id": "m0", "start": A, "length": 1 << 30, "nohugepage": True}]
    )
    assert rows(p)[0][:2] == ("sigbus", SIGBUS)


def test_devdax_beyond_device():
    p = devdax([r(6 * M)], size="4M")
    assert rows(p) == [("sigbus", SIGBUS, covers("devdax-beyond-device"))]


def test_not_mapped_and_write_readonly():
    p = fsdax([r(16 * M)])
    assert p.results[0].reason == covers("not-mapped")
    p = fsdax([w(0)], mappings=[{"id": "m0", "start": A, "length": 16 * M, "writable": False}])
    assert p.results[0].reason == covers("write-readonly")


def test_mmap_over_a_live_mapping_is_refused():
    maps = [{"id": "a", "start": A, "length": 4 * M}, {"id": "b", "start": A + 2 * M, "length": 4 * M, "mapped": False}]
    p = fsdax(
        [
            {"mapping": "b", "op": "mmap"},
            r(0, "b"),
            {"mapping": "a", "op": "munmap"},
            {"mapping": "b", "op": "mmap"},
            r(0, "b"),
        ],
        mappings=maps,
    )
    assert (p.results[0].outcome, p.results[0].errno, p.results[0].reason) == ("error", 17, covers("mapping-overlap"))
    assert p.results[1].reason == "mapping-overlap"
    assert p.results[3].outcome != "error" and p.results[4].outcome == "pmd"


def test_overlapping_initial_mappings_are_a_case_error():
    from pmemtrace.errors import CaseError

    with pytest.raises(CaseError) as e:
        fsdax([r(0)], mappings=[{"id": "a", "start": A, "length": 4 * M}, {"id": "b", "start": A + M, "length": M}])
    assert e.value.key == "mappings"


def _covered_codes():
    """The codes passed to covers() in this file, each inside a test_ function
    (read from the source, so the check does not depend on test order or -k)."""
    with open(__file__) as f:
        tree = ast.parse(f.read())
    found = {}
    for fn in tree.body:
        if not (isinstance(fn, ast.FunctionDef) and fn.name.startswith("test_")):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "covers":
                found.setdefault(node.args[0].value, fn.name)
    return found


def test_every_reason_code_has_a_test():
    covered = _covered_codes()
    assert sorted(set(REASONS) - set(covered)) == [], "reason codes no test here asserts"
    assert sorted(set(covered) - set(REASONS)) == [], "covers() names codes the model does not have"


#: codes that no embedded example or scenario produces, each with the reason
#: (empty today: every code has an example, and all but pfn-* a scenario)
NOT_PRODUCED = {}


def _produced_codes():
    from pmemtrace.cli.explain import example_names, load_example
    from pmemtrace.workload.dryrun import dry_case
    from pmemtrace.workload.scenario import embedded_names, load_embedded

    seen = {}
    cases = [(f"example {n}", load_example(n)) for n in example_names()]
    cases += [(f"scenario {n}", parse_case(dry_case(load_embedded(n)))) for n in embedded_names()]
    for where, case in cases:
        for res in explain(case).results:
            if res.reason:
                seen.setdefault(res.reason, where)
    return seen


def test_every_reason_code_is_produced_by_an_example_or_scenario():
    seen = _produced_codes()
    assert sorted(set(seen) - set(REASONS)) == [], "the model gave a reason code reasons.py does not list"
    missing = set(REASONS) - set(seen)
    assert missing == set(NOT_PRODUCED), sorted(missing ^ set(NOT_PRODUCED))


def test_devdax_on_fsdev_dax_has_no_mmap():
    """fsdev_dax (famfs) gives /dev/daxX.Y file_operations without ->mmap:
    do_mmap() fails with ENODEV before check_vma(), shared or private,
    aligned or not; the same device on device_dax maps."""
    from pmemtrace.model.build import case_to_json

    base = {"version": 1, "kernel": "7.2.13+deb14-amd64", "accesses": [r(0)]}
    dev = {"mode": "devdax", "align": "2M", "size": "1G", "data_start": "0x100000000"}
    for m in (
        {"id": "m0", "start": A, "length": 4 * M},
        {"id": "m0", "start": A + 4096, "length": 4 * M, "shared": False},
    ):
        case = parse_case(dict(base, device=dict(dev, driver="fsdev_dax"), mappings=[m]))
        res = explain(case).results[0]
        assert (res.outcome, res.errno, res.reason) == ("error", 19, covers("devdax-fsdev-no-mmap"))
        assert case_to_json(case)["device"]["driver"] == "fsdev_dax"
    ok = explain(parse_case(dict(base, device=dev, mappings=[{"id": "m0", "start": A, "length": 4 * M}])))
    assert ok.results[0].outcome == "pmd"
    plain = parse_case(dict(base, device=dev, mappings=[{"id": "m0", "start": A, "length": 4 * M}]))
    assert "driver" not in case_to_json(plain)["device"]


def test_device_driver_is_devdax_only():
    from pmemtrace.model.case import CaseError

    m = [{"id": "m0", "start": A, "length": 4 * M}]
    c = {"version": 1, "device": {"mode": "fsdax", "driver": "fsdev_dax"}, "mappings": m, "accesses": [r(0)]}
    with pytest.raises(CaseError, match=r"device\.driver"):
        parse_case(c)
    c["device"] = {"mode": "devdax", "size": "1G", "driver": "kmem"}
    with pytest.raises(CaseError, match=r"device\.driver"):
        parse_case(c)
