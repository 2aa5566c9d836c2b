"""The per-CPU counter slots of the counting program (``slots`` in
bpf/pmemtrace.bpf.c, ``struct pmt_slot`` in bpf/pmemtrace.h), read and
retired from user space.

A counted fault finds its key's slot (this CPU's, direct-mapped by a hash
of the key) with an array lookup where the per-CPU hash ``counts`` walks a
bucket: most of a counted fault's cost once the members are plain loads.
The program claims an EMPTY slot (key and counters first, state LIVE
last) and afterwards only adds to its own key's counters; any other key
that maps there, or a slot being retired, is counted in ``counts``.  So a
key's total is its slots' counters plus its ``counts`` entry, and both only
grow.

Slots of processes that are gone are given back: :meth:`SlotTable.totals`
marks such a slot RETIRING (programs then leave it alone), and at the
next read, one interval later, when no program that saw it LIVE can still
be running (a program runs for microseconds), it moves the slot's final
counters to :attr:`SlotTable.retired`, zeroes the slot and sets EMPTY last.
Nothing a program counted is lost on the way.  Once the backend has
reported a gone process's final counts it calls :meth:`SlotTable.forget`,
so a watch left running keeps nothing per mapping of processes long gone.
"""

import mmap
import struct
from collections.abc import Callable
from typing import Any

#: struct pmt_slot: struct pmt_key (tgid, dev, ino, vm_start, vm_end),
#: struct pmt_counts (5 counters), state, pad
SLOT = struct.Struct("<IIQQQ5QII")
KEY_AND_COUNTS = 72  # bytes before the state
EMPTY, LIVE, RETIRING = 0, 1, 2  # PMT_SLOT_*
_STATE = struct.Struct("<I")

Key = tuple[int, int, int, int, int]


class SlotTable:
    """The slots in *buf* (the map's memory, or any writable buffer of
    whole slots); *alive(tgid)* says whether a process still exists."""

    def __init__(self, buf: Any, alive: Callable[[int], bool]) -> None:
        if SLOT.size != 80:
            raise AssertionError("struct pmt_slot is 80 bytes")
        self.buf = buf
        self.count = len(buf) // SLOT.size
        self.alive = alive
        #: {key: counters} of the slots emptied so far
        self.retired: dict[Key, list[int]] = {}
        self._retiring: list[int] = []  # slot indices marked at the last read
        #: the keys of the LIVE slots at the last read and of those it marked
        #: RETIRING: keys whose slots may still change
        self.held: set[Key] = set()

    @classmethod
    def open(cls, fd: int, entries: int, alive: Callable[[int], bool]) -> "SlotTable":
        """The table of the mmapable array map *fd* (*entries* slots)."""
        size = entries * SLOT.size
        length = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
        mm = mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        return cls(memoryview(mm)[:size], alive)

    def close(self) -> None:
        buf = self.buf
        self.buf = None
        if isinstance(buf, memoryview):
            obj = buf.obj
            buf.release()
            if isinstance(obj, mmap.mmap):
                obj.close()

    def totals(self) -> dict[Key, list[int]]:
        """{key: counters} over every slot and the slots retired, after
        emptying those marked at the last read and marking the LIVE slots
        of processes that are gone."""
        buf, size = self.buf, SLOT.size
        for i in self._retiring:
            off = i * size
            rec = SLOT.unpack_from(buf, off)
            acc = self.retired.setdefault(rec[:5], [0] * 5)
            for j, n in enumerate(rec[5:10]):
                acc[j] += n
            buf[off : off + KEY_AND_COUNTS] = bytes(KEY_AND_COUNTS)
            _STATE.pack_into(buf, off + KEY_AND_COUNTS, EMPTY)  # last: the slot is free from here
        self._retiring = []
        self.held = set()
        out = {k: list(v) for k, v in self.retired.items()}
        states = bytes(buf[KEY_AND_COUNTS::size])  # each slot's state (its low byte)
        alive: dict[int, bool] = {}
        for i, st in enumerate(states):
            if st != LIVE:
                continue
            rec = SLOT.unpack_from(buf, i * size)
            key = rec[:5]
            self.held.add(key)
            acc = out.setdefault(key, [0] * 5)
            for j, n in enumerate(rec[5:10]):
                acc[j] += n
            tgid = key[0]
            if tgid not in alive:
                alive[tgid] = self.alive(tgid)
            if not alive[tgid]:
                _STATE.pack_into(buf, i * size + KEY_AND_COUNTS, RETIRING)
                self._retiring.append(i)
        return out

    def forget(self, key: Key) -> None:
        """Drop the retired counters of *key* (reported final: its process
        is gone and no slot holds it); a slot claimed for it later counts
        from zero."""
        self.retired.pop(key, None)
