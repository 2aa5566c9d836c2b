"""When a live backend reads its kernel buffer next.

Both backends hand over events in buffers the kernel fills (tracefs:
each CPU's ring buffer; bcc: the BPF ring) and wake nobody, so the reader
sleeps and then reads.  Reading again as soon as a read found anything
kept the reader on a CPU the whole time a workload faulted, picking up
part-filled pages a few events at a time: the tracefs watch took 2.7 s of
CPU over 655,360 fs_dax events in a 7.3 lab boot where ``trace-cmd record``
took 1.2 s over twice as many (``benchmarks/bench_watch_overhead.py``).

A :class:`Pacer` instead waits until the buffer would be
:data:`FILL_SHARE` full at the rate it filled since the last read: long
waits while the workload is quiet, short ones (down to :data:`MIN_NAP`)
while it is busy, and none while a read left data behind (the caller
says so), so the buffer is emptied long before the kernel must drop.
"""

from __future__ import annotations

import time

#: at most this share of the buffer fills while the reader waits
FILL_SHARE = 0.25
#: the wait between reads is MIN_NAP to MAX_NAP seconds (the session's own
#: timeout caps it too: views are printed on time)
MIN_NAP = 0.005
MAX_NAP = 1.0


class Pacer:
    """The wait before the next read of a buffer of *capacity* bytes."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.nap = MAX_NAP
        self._last = time.monotonic()

    def read(self, filled: int) -> None:
        """A read found *filled* bytes (the most any one CPU's buffer held
        where there is one per CPU): the next wait follows their rate."""
        now = time.monotonic()
        elapsed, self._last = now - self._last, now
        if filled <= 0:
            self.nap = MAX_NAP
        else:
            self.nap = max(MIN_NAP, min(MAX_NAP, FILL_SHARE * self.capacity * elapsed / filled))

    def wait(self, timeout: float, behind: bool = False) -> None:
        """Sleep before the next read: the pace, at most *timeout* seconds;
        not at all when *timeout* is 0 or the last read left data *behind*."""
        if timeout > 0 and not behind:
            time.sleep(min(timeout, self.nap))
