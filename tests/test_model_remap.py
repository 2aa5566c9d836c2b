"""Partial munmap and mremap (pmemtrace/model/remap.py): VMA splits, the
page tables a move carries or drops, and the errors the kernel gives."""

from modelkit import A, M, devdax, fsdax, r, w

B = A + (1 << 30)  # a free place to move to


def _map(length=4 * M, **kw):
    return [{"id": "m0", "start": A, "length": length, **kw}]


def mremap(length, new_start=None, fixed=False, maymove=False):
    a = {"mapping": "m0", "op": "mremap", "length": length, "maymove": maymove}
    if new_start is not None:
        a["new_start"] = new_start
    if fixed:
        a["fixed"] = True
    return a


def out(pred):
    return [(x.op, x.outcome, x.errno) for x in pred.results]


def test_a_huge_pmd_moves_with_the_mapping_when_both_addresses_are_aligned():
    # move_huge_pmd(): the extent is 2 MiB at both ends, the PMD moves whole
    p = fsdax([w(0), mremap(4 * M, B, fixed=True, maymove=True), r(0), w(0)], mappings=_map())
    assert out(p)[0][1] == "pmd"
    assert [x.outcome for x in p.results[2:]] == ["none", "none"]
    assert p.results[2].address == B  # the access follows the mapping


def test_a_huge_pmd_is_dropped_when_the_move_changes_its_colour():
    # the extent stops at the new address's 2 MiB boundary: split_huge_pmd()
    # clears the DAX PMD; the block faults again at its new place
    p = fsdax([w(0), mremap(4 * M, B + 4096, fixed=True, maymove=True), r(0)], mappings=_map())
    again = p.results[2]
    assert again.outcome not in ("none", "error")
    assert again.address == B + 4096
    assert p.results[2].to_json()["events"], "a fault logs fs_dax events"


def test_ptes_move_one_by_one_into_a_new_table():
    p = fsdax(
        [w(0), w(8192), mremap(4 * M, B + 4096, fixed=True, maymove=True), r(0), w(8192), r(4096)],
        mappings=_map(nohugepage=True),
    )
    assert [x.outcome for x in p.results[:2]] == ["pte", "pte"]
    # the two PTEs moved (no fault); the page never touched faults, at 4 KiB
    # (the moved-to block has a page table now)
    assert [x.outcome for x in p.results[3:5]] == ["none", "none"]
    assert p.results[5].outcome == "pte"


def test_partial_munmap_clears_a_huge_pmd_across_the_split():
    # __split_vma() -> vma_adjust_trans_huge(): the PMD over the split
    # address is cleared; the part left faults again, at 4 KiB (1 MiB left in
    # that block: the PMD no longer fits the VMA)
    p = fsdax([w(0), {"mapping": "m0", "op": "munmap", "offset": M, "length": 2 * M}, r(0), r(3 * M)], mappings=_map())
    assert p.results[0].outcome == "pmd"
    assert p.results[1].errno is None
    assert p.results[2].outcome == "pte" and p.results[2].reason == "vma-end"
    # without the split rule the first block's PMD would still be there
    assert p.results[2].outcome != "none"


def test_touching_the_unmapped_middle_is_sigsegv():
    p = fsdax([{"mapping": "m0", "op": "munmap", "offset": M, "length": M}, r(M + 4096), r(0)], mappings=_map())
    assert (p.results[1].outcome, p.results[1].reason) == ("error", "not-mapped")
    assert p.results[2].outcome != "error"


def test_devdax_splits_only_at_its_align():
    bad = devdax([{"mapping": "m0", "op": "munmap", "offset": 4096, "length": 2 * M}])
    assert (bad.results[0].errno, bad.results[0].reason) == (22, "devdax-vma-unaligned")
    ok = devdax([{"mapping": "m0", "op": "munmap", "offset": 2 * M, "length": 2 * M}, r(0), r(2 * M)])
    assert ok.results[0].errno is None
    assert ok.results[1].outcome == "pmd" and ok.results[2].reason == "not-mapped"


def test_mremap_errors():
    # a range over two VMAs (split by madvise): vma_to_resize() -EFAULT
    split = fsdax(
        [
            {"mapping": "m0", "op": "madvise", "advice": "nohugepage", "offset": M, "length": M},
            mremap(8 * M, B, True, True),
        ],
        mappings=_map(),
    )
    assert split.results[1].errno == 14
    # no room to grow and no MREMAP_MAYMOVE: -ENOMEM; MREMAP_FIXED without
    # MREMAP_MAYMOVE: -EINVAL; overlapping ranges: -EINVAL
    two = [*_map(), {"id": "m1", "start": A + 4 * M, "length": 2 * M}]
    assert fsdax([mremap(6 * M)], mappings=two).results[0].errno == 12
    assert fsdax([mremap(4 * M, B, fixed=True)], mappings=_map()).results[0].errno == 22
    assert fsdax([mremap(4 * M, A + 2 * M, True, True)], mappings=_map()).results[0].errno == 22


def test_grow_in_place_keeps_the_translations_and_shrink_drops_the_tail():
    p = fsdax([w(0), mremap(8 * M), r(0), w(6 * M), mremap(2 * M), r(0), r(2 * M)], mappings=_map())
    assert p.results[1].errno is None and p.results[2].outcome == "none"
    assert p.results[3].outcome == "pmd"  # the grown part maps the file on
    assert p.results[5].outcome == "none"
    assert p.results[6].reason == "not-mapped"


def test_the_kernel_moved_it_when_it_found_no_room():
    # new_start recorded by run --case: the model follows the kernel
    p = fsdax([w(0), mremap(8 * M, B, maymove=True), r(0)], mappings=_map())
    assert p.results[2].address == B and p.results[2].outcome == "none"


def test_a_madvise_split_clears_the_huge_pmd_across_it():
    # MADV_NOHUGEPAGE over [1M, 1M+4K) splits the VMA twice inside the
    # first block: its PMD is cleared, the next read there faults again
    adv = {"mapping": "m0", "op": "madvise", "advice": "nohugepage", "offset": M, "length": 4096}
    p = fsdax([w(0), w(2 * M), adv, r(0), r(2 * M)], mappings=_map())
    assert [x.outcome for x in p.results[:2]] == ["pmd", "pmd"]
    assert p.results[3].outcome == "pte"  # was "none" before the split rule
    assert p.results[4].outcome == "none"  # the other block's PMD stays


def test_a_fixed_move_of_several_vmas_from_6_17():
    # madvise split the mapping in three; an unchanged-length MREMAP_FIXED
    # move takes them all from v6.17 (remap_move()), EFAULT before
    adv = {"mapping": "m0", "op": "madvise", "advice": "nohugepage", "offset": M, "length": M}
    acc = [w(0), adv, mremap(4 * M, B, fixed=True, maymove=True), r(3 * M), r(M)]
    old = fsdax(acc, mappings=_map())
    assert old.results[2].errno == 14
    new = fsdax(acc, mappings=_map(), kernel="7.2.13+deb14-amd64")
    assert new.results[2].errno is None
    assert new.results[3].address == B + 3 * M and new.results[3].outcome == "pmd"
    assert new.results[4].outcome == "pte"  # the nohugepage piece moved with its flag
    # a resizing move is still one VMA only
    grown = fsdax([adv, mremap(6 * M, B, fixed=True, maymove=True)], mappings=_map(), kernel="7.2.13+deb14-amd64")
    assert grown.results[1].errno == 14


def test_madvise_beyond_a_shrunk_mapping_is_enomem_unless_a_cover_is_there():
    # madvise_walk_vmas(): -ENOMEM when part of the range is in no VMA; the
    # PROT_NONE cover run --case maps over the emptied tail is a VMA
    adv = {"mapping": "m0", "op": "madvise", "advice": "dontneed", "offset": M, "length": 2 * M}
    bare = fsdax([mremap(2 * M), adv], mappings=_map())
    assert bare.results[1].errno == 12
    covered = fsdax([{**mremap(2 * M), "cover": True}, adv], mappings=_map())
    assert covered.results[1].errno is None


def _unmap(off, length):
    return {"mapping": "m0", "op": "munmap", "offset": off, "length": length, "cover": True}


def test_covers_side_by_side_are_one_vma():
    # two partial munmaps with covers empty the whole mapping; the covers
    # merge (vma_merge() of anonymous PROT_NONE VMAs), so an mremap of the
    # whole range finds one VMA (lab, 5.10..7.3, seed 32 case 394)
    acc = [_unmap(0, 3 * M), _unmap(M, 3 * M), {**mremap(6 * M, maymove=True), "cover": True}]
    p = fsdax(acc, mappings=_map(shared=False))
    assert [x.errno for x in p.results] == [None, None, None]
    # MADV_NOHUGEPAGE over part of a cover splits it (anonymous memory has
    # no THP flag until advised): the same mremap then spans VMAs
    adv = {"mapping": "m0", "op": "madvise", "advice": "nohugepage", "offset": M, "length": M}
    q = fsdax([*acc[:2], adv, acc[2]], mappings=_map(shared=False))
    assert q.results[3].errno == 14


def test_a_grow_over_a_cover_reaching_past_the_end():
    # a cover wider than what is left of the mapping: the process unmaps
    # the cover past the end for room, and the grow in place succeeds
    # (lab, 5.10..7.2, seed 32 case 1415)
    acc = [_unmap(0, 6 * M), {**mremap(8 * M), "cover": True}]
    assert fsdax(acc, mappings=_map()).results[1].errno is None


def test_remap_move_refuses_an_unbatchable_first_vma_before_moving_it():
    # device-dax VMAs may not be batched: from v6.17 remap_move() returns
    # -EFAULT when the range goes on past the first VMA, before moving it
    # ("mm/mremap: catch invalid multi VMA moves earlier"); the mapping
    # stays where it was, so a shrink of it then works (lab, 7.3.4, seed 31
    # case 1595)
    adv = {"mapping": "m0", "op": "madvise", "advice": "nohugepage", "offset": 2 * M, "length": 2 * M}
    acc = [w(0), adv, mremap(8 * M, B, fixed=True, maymove=True), r(0), mremap(2 * M)]
    p = devdax(acc, kernel="7.3.4+deb13-amd64")
    assert p.results[2].errno == 14
    assert p.results[3].outcome == "none" and p.results[3].address == A  # nothing moved
    assert p.results[4].errno is None


def test_a_grow_over_its_end_block_makes_it_the_mappings_own():
    # the end block was shared with the reservation beyond the end; the grow
    # in place took that room, so after a whole munmap no VMA is left in the
    # block and free_pgtables() frees its table: the next mapping there
    # tries the PMD fault again (lab, 7.3.4 xfs, seed 31 case 13)
    mp = [{"id": "m0", "start": A, "length": 3 * M // 2}]
    acc = [r(0), {**mremap(5 * M // 2), "cover": True}, {"mapping": "m0", "op": "munmap"}]
    acc += [{"mapping": "m0", "op": "mmap"}, r(0)]
    p = fsdax(acc, mappings=mp, process={"shared_blocks": [hex(A)]})
    assert p.results[1].errno is None
    ev = p.results[4].to_json()["events"]
    assert ev[0]["name"] == "dax_pmd_fault" and p.results[4].reason == "vma-end"
    # without the grow the reservation stays in the block, and so does the table
    q = fsdax([r(0), *acc[2:]], mappings=mp, process={"shared_blocks": [hex(A)]})
    assert q.results[3].reason == "pte-table-present"
