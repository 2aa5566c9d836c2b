"""Page tables outside the case (process.page_tables, shared_blocks,
fork_tables): which a forked child inherits, and when a munmap frees one
after a grow in place took the whole block (lab findings of issue 16,
docs/model-validation.md)."""

from pmemtrace.model import explain, parse_case

BLOCK = 0x7F0000000000


def _case(mappings, accesses, **process):
    return parse_case(
        {
            "version": 1,
            "kernel": "6.12",
            "device": {"mode": "fsdax", "size": "1G"},
            "file": {"size": "8M", "extents": [{"logical": 0, "physical": 0, "length": "8M"}]},
            "mappings": mappings,
            "accesses": accesses,
            "process": process,
        }
    )


def _first_events(case):
    return [next((e.name for e in r.events()), None) for r in explain(case).results]


def _forked(fork_tables):
    m = [{"id": "m0", "start": hex(BLOCK + 0x73000), "length": "2M", "offset": hex(0x73000)}]
    acc = [
        {"op": "fork"},
        {"mapping": "m0", "offset": 0, "op": "read", "child": True},
        {"mapping": "m0", "offset": 0, "op": "read"},
    ]
    return _first_events(_case(m, acc, page_tables=[hex(BLOCK)], shared_blocks=[hex(BLOCK)], fork_tables=fork_tables))


def test_child_inherits_only_the_tables_of_written_vmas():
    # the parent has the table either way: no PMD attempt
    assert _forked([])[2] == "dax_pte_fault"
    # a guard only read (zero page, no anon_vma): the child has no table there
    assert _forked([])[1] == "dax_pmd_fault"
    # a written neighbour (anon_vma): copy_page_range() gave the child its table
    assert _forked([hex(BLOCK)])[1] == "dax_pte_fault"


def _regrown(grow):
    m = [{"id": "m0", "start": hex(BLOCK), "length": hex(0xB000)}]
    acc = [{"mapping": "m0", "offset": 0, "op": "read"}]  # a 4 KiB page: a table in the block
    if grow:
        acc.append({"mapping": "m0", "op": "mremap", "length": hex(0x20B000), "maymove": False, "cover": True})
    acc += [
        {"mapping": "m0", "op": "munmap"},
        {"mapping": "m0", "op": "mmap"},
        {"mapping": "m0", "offset": 0, "op": "read"},
    ]
    return _first_events(_case(m, acc, shared_blocks=[hex(BLOCK)]))[-1]


def test_a_block_a_grow_took_whole_is_no_longer_shared():
    assert _regrown(grow=False) == "dax_pte_fault"  # the reservation beside it keeps the table
    assert _regrown(grow=True) == "dax_pmd_fault"  # nothing else left in the block: munmap freed it
