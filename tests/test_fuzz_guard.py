"""The executor's edge guard (pmemtrace/fuzz/execute.py _guard_edges()) on
this host's own memory: no DAX needed, only /proc/self/mem and pagemap.

A mapping the kernel placed shares its partly covered first and last 2 MiB
blocks with whatever lies beside it; the guard fills the free rest of each
block with a read-only mapping and reads it, so each block surely has a page
table, and says which blocks it read in -- what the record adds to the
tables pagemap shows (an emptied table is invisible to pagemap)."""

import mmap

import pytest

from pmemtrace.fuzz.execute import _guard_edges
from pmemtrace.workload import engine as E
from pmemtrace.workload.worker import edge_page_tables, own_maps

PMD = 2 << 20


@pytest.fixture
def misaligned():
    """A 2 MiB anonymous mapping 0x73000 into a 2 MiB block, the rest of its
    first and last blocks free: [start, length, first block, last block]."""
    hold = E.mmap(-1, 12 << 20, prot=0, shared=False)
    base = (hold.addr + PMD - 1) & ~(PMD - 1)
    lo, hi = base + PMD, base + 3 * PMD  # the two blocks, emptied
    E._check(E.lib.pmt_munmap(lo, hi - lo), "munmap")
    m = E.mmap(-1, PMD, prot=mmap.PROT_READ | mmap.PROT_WRITE, shared=False, addr=lo + 0x73000, fixed=True)
    try:
        yield m.addr, m.length, lo, lo + PMD
    finally:
        E._check(E.lib.pmt_munmap(hold.addr, hold.length), "munmap")


def test_guard_reads_both_edge_blocks_and_says_so(misaligned):
    start, length, first, last = misaligned
    assert edge_page_tables(start, length) == [], "nothing of ours in the blocks yet"
    tabled = _guard_edges(start, length)
    assert tabled == {first, last}
    # the guard's zero pages are present: the record sees the same blocks
    assert sorted(edge_page_tables(start, length)) == [first, last]
    # and the free rest of each block is now the guard's
    inside = [(v0, v1) for v0, v1, _ in own_maps() if v0 < last + PMD and v1 > first]
    assert inside[0][0] == first and inside[-1][1] == last + PMD
    assert all(a[1] == b[0] for a, b in zip(inside, inside[1:])), f"a gap is left: {inside}"


def test_aligned_mapping_has_no_edge_to_guard(misaligned):
    _start, _length, first, _last = misaligned
    E._check(E.lib.pmt_munmap(first, 2 * PMD), "munmap")
    E.mmap(-1, PMD, prot=mmap.PROT_READ, shared=False, addr=first, fixed=True)
    assert _guard_edges(first, PMD) == set()
