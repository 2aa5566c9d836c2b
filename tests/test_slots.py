"""The counting program's per-CPU counter slots (bpf/pmemtrace.bpf.c
`slots`, live/slots.py): read from the map's memory, summed with the hash
per key, and given back when their process is gone without losing a
count a program made meanwhile."""

import struct

from cffi import FFI

from pmemtrace.live.decode import cdef_text
from pmemtrace.live.slots import EMPTY, KEY_AND_COUNTS, LIVE, RETIRING, SLOT, SlotTable

KEY = (9, 0x10300001, 5, 0x7F0000000000, 0x7F0000400000)


def _slot(key, counts, state):
    return SLOT.pack(*key, *counts, state, 0)


def _state(buf, i):
    return struct.unpack_from("<I", buf, i * SLOT.size + KEY_AND_COUNTS)[0]


def test_the_slot_struct_is_the_headers():
    ffi = FFI()
    ffi.cdef(cdef_text())
    assert ffi.sizeof("struct pmt_slot") == SLOT.size == 80
    assert ffi.offsetof("struct pmt_slot", "state") == KEY_AND_COUNTS


def test_live_slots_are_summed_per_key_and_other_states_skipped():
    other = (10, 0x10300001, 6, 0x7F1000000000, 0x7F1000200000)
    buf = bytearray(
        _slot(KEY, (3, 0, 1, 3, 0), LIVE)  # CPU 0
        + _slot(other, (1, 0, 0, 1, 0), LIVE)
        + _slot(KEY, (2, 4, 0, 2, 0), LIVE)  # CPU 1, the same key
        + _slot(other, (7, 7, 7, 7, 7), EMPTY)  # being claimed: not yet LIVE
    )
    t = SlotTable(buf, alive=lambda tgid: True)
    assert t.totals() == {KEY: [5, 4, 1, 5, 0], other: [1, 0, 0, 1, 0]}
    assert [_state(buf, i) for i in range(4)] == [LIVE, LIVE, LIVE, EMPTY]


def test_a_gone_processs_slot_is_retired_after_an_interval_with_every_count():
    """Marked RETIRING at the read that finds its process gone (programs
    then count the key in the hash); emptied at the next read, its final
    counters kept in `retired`: a count made between the two reads by a
    program that saw it LIVE is not lost, and the totals never go down."""
    gone = {9}
    buf = bytearray(_slot(KEY, (3, 0, 0, 3, 0), LIVE) + _slot(KEY, (0, 0, 0, 0, 0), EMPTY))
    t = SlotTable(buf, alive=lambda tgid: tgid not in gone)
    assert t.totals() == {KEY: [3, 0, 0, 3, 0]}
    assert _state(buf, 0) == RETIRING
    # a program that read LIVE just before the mark finishes its count
    struct.pack_into("<Q", buf, 32, 4)
    assert t.totals() == {KEY: [4, 0, 0, 3, 0]}
    assert _state(buf, 0) == EMPTY and bytes(buf[:KEY_AND_COUNTS]) == bytes(KEY_AND_COUNTS)
    assert t.retired == {KEY: [4, 0, 0, 3, 0]}
    # the slot is claimed again (another process, or the tgid reused) and adds up
    buf[: SLOT.size] = _slot(KEY, (1, 0, 0, 0, 0), LIVE)
    gone.clear()
    assert t.totals() == {KEY: [5, 0, 0, 3, 0]}
