"""known_limit(): an access after the allocator limit, in a block a write
allocated during the case, is counted with that limit; others are not."""

from pmemtrace.fuzz.compare import Row, known_limit

M = 1 << 20


def _case(extents):
    return {
        "device": {"mode": "fsdax"},
        "file": {"size": 8 * M, "extents": extents},
        "mappings": [{"id": "m0", "start": "0x7f0000000000", "length": 8 * M, "offset": 0}],
        "accesses": [
            {"mapping": "m0", "offset": 0, "op": "write"},
            {"mapping": "m0", "offset": M, "op": "read"},
            {"mapping": "m0", "offset": 4 * M, "op": "read"},
        ],
    }


def _row(i, op):
    pte = [["dax_pte_fault", "0x1", ""], ["dax_pte_fault_done", "0x1", "NOPAGE"]]
    return Row(i, op, "fsdax:read:pmd", False, {"outcome": "pmd", "events": []}, {"events": pte})


def test_a_read_in_a_block_an_earlier_write_allocated_is_the_allocator():
    hole_first = _case([{"logical": 2 * M, "length": 6 * M, "unwritten": False}])
    assert known_limit(hole_first, _row(1, "read")) == "allocator"
    # block 2 was written at the start: no allocation there, nothing explains it
    assert known_limit(hole_first, _row(2, "read")) is None


def test_no_allocation_no_limit():
    written = _case([{"logical": 0, "length": 8 * M, "unwritten": False}])
    assert known_limit(written, _row(1, "read")) is None


def test_odirect_stop_on_a_bio_boundary_is_the_documented_limit_and_nothing_else():
    """7.3 faults an O_DIRECT stop on a bio's first page fewer times than
    the model: that known limit, and only that shape of difference."""
    import json
    import os

    from pmemtrace.fuzz.compare import compare, known_limit

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "regressions")
    with open(os.path.join(path, "odirect-stop-at-a-bio-boundary.json")) as f:
        reg = json.load(f)
    (row,) = compare(reg["case"], reg["kernel_observation"]).disagreements
    assert known_limit(reg["case"], row) == "odirect-stop-on-a-bio-boundary"
    # the kernel faulting the stop page more often than the model is not it
    more = dict(row.kernel, events=row.kernel["events"] + row.kernel["events"][-2:] * 3)
    assert known_limit(reg["case"], type(row)(**{**row.__dict__, "kernel": more})) is None
    # nor a different errno
    other = dict(row.kernel, errno=None)
    assert known_limit(reg["case"], type(row)(**{**row.__dict__, "kernel": other})) is None
